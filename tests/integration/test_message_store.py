"""The message store's sends and receives with their checkpoints, on either backend.

On PostgreSQL each is one statement (``_sysdb/postgres.py``), on SQLite a
transaction; either way a message and its step are written together or not
at all, and the step is never recorded twice.
"""

from __future__ import annotations

from typing import Any, List, Tuple

import pytest

from dbos._sysdb import SystemDatabase
from dbos._sysdb.notifications import NULL_TOPIC
from dbos._sysdb.records import Received, StepWrite
from dbos.error import DBOSNonExistentWorkflowError, DBOSWorkflowConflictIDError


def add_workflow(sysdb: SystemDatabase, workflow_id: str, status: str = "PENDING") -> None:
    table = sysdb.models.workflow_status
    sysdb.run(lambda: table.insert(workflow_uuid=workflow_id, status=status,
                                   created_at=1, updated_at=1).execute())


def rows(sysdb: SystemDatabase, sql: str, params: Tuple[Any, ...] = ()) -> List[Tuple[Any, ...]]:
    qualified = sysdb.backend.qualified
    text = sql.format(notes=qualified("notifications"), steps=qualified("operation_outputs"),
                      events=qualified("workflow_events"), history=qualified("workflow_events_history"))
    text = text.replace("?", sysdb.backend.placeholder)
    return sysdb.run(lambda: [tuple(r) for r in sysdb.execute(text, list(params)).fetchall()],
                     transaction=False)


def messages(sysdb: SystemDatabase) -> List[Tuple[Any, ...]]:
    return rows(sysdb, "SELECT destination_uuid, topic, message, consumed FROM {notes} "
                       "ORDER BY created_at_epoch_ms, message_uuid")


def steps(sysdb: SystemDatabase, workflow_id: str) -> List[Tuple[Any, ...]]:
    return rows(sysdb, "SELECT function_id, function_name, output FROM {steps} "
                       "WHERE workflow_uuid = ? ORDER BY function_id", (workflow_id,))


@pytest.fixture
def store(sysdb: SystemDatabase) -> SystemDatabase:
    for workflow_id in ("sender", "receiver"):
        add_workflow(sysdb, workflow_id)
    add_workflow(sysdb, "stopped", status="CANCELLED")
    return sysdb


def test_a_send_from_a_workflow_returns_its_status_and_records_the_step(store: SystemDatabase) -> None:
    status = store.send_messages([("receiver", "t", "m1", "u1", None), ("receiver", None, "m2", "u2", None)],
                                 StepWrite("sender", 1, "DBOS.send_bulk", output="none"))
    assert status == "PENDING"
    assert sorted(messages(store)) == [("receiver", NULL_TOPIC, "m2", False), ("receiver", "t", "m1", False)]
    assert steps(store, "sender") == [(1, "DBOS.send_bulk", "none")]
    cancelled = store.send_messages([("receiver", "t", "m3", "u3", None)], StepWrite("stopped", 1, "DBOS.send"))
    assert cancelled == "CANCELLED"


def test_a_send_whose_step_is_recorded_already_sends_nothing(store: SystemDatabase) -> None:
    store.send_messages([("receiver", "t", "first", "u1", None)], StepWrite("sender", 1, "DBOS.send"))
    with pytest.raises(DBOSWorkflowConflictIDError, match="sender"):
        store.send_messages([("receiver", "t", "again", "u2", None)], StepWrite("sender", 1, "DBOS.send"))
    assert messages(store) == [("receiver", "t", "first", False)]


def test_a_send_outside_a_workflow_skips_a_message_it_already_has(store: SystemDatabase) -> None:
    assert store.send_messages([("receiver", "t", "m", "key::receiver", None)]) is None
    assert store.send_messages([("receiver", "t", "m", "key::receiver", None)]) is None
    assert messages(store) == [("receiver", "t", "m", False)]


def received(store: SystemDatabase, function_id: int = 1, topic: str = "t") -> Received:
    """What a receive in workflow "receiver" holds after finding the oldest message."""
    found = store.find_message("receiver", topic)
    assert found is not None
    uuid, text, stored = found
    return Received(uuid, StepWrite("receiver", function_id, "DBOS.recv", output=text, serialization=stored))


def test_find_reads_the_oldest_message_and_consuming_it_records_the_step(store: SystemDatabase) -> None:
    assert store.find_message("receiver", "t") is None
    for n, text in enumerate(("old", "new"), start=1):
        store.send_messages([("receiver", "t", text, f"u{n}", None)])
    assert store.find_message("receiver", "t") == ("u1", "old", None)
    assert store.find_message("receiver", "t") == ("u1", "old", None)  # only a read
    assert store.consume_received(received(store)) == "PENDING"
    assert steps(store, "receiver") == [(1, "DBOS.recv", "old")]
    assert messages(store) == [("receiver", "t", "old", True), ("receiver", "t", "new", False)]
    assert store.find_message("receiver", "t") == ("u2", "new", None)


def test_consuming_for_a_recorded_step_leaves_the_message_unread(store: SystemDatabase) -> None:
    store.send_messages([("receiver", "t", "one", "u1", None), ("receiver", "t", "two", "u2", None)])
    store.consume_received(received(store))
    with pytest.raises(DBOSWorkflowConflictIDError, match="receiver"):
        store.consume_received(received(store))  # "two", at the recorded step 1
    assert messages(store) == [("receiver", "t", "one", True), ("receiver", "t", "two", False)]
    assert steps(store, "receiver") == [(1, "DBOS.recv", "one")]


def test_consuming_a_message_another_execution_took_records_nothing(store: SystemDatabase) -> None:
    store.send_messages([("receiver", "t", "one", "u1", None)])
    first, second = received(store, 1), received(store, 2)  # two executions found the same message
    store.consume_received(first)
    with pytest.raises(DBOSWorkflowConflictIDError, match="receiver"):
        store.consume_received(second)
    assert steps(store, "receiver") == [(1, "DBOS.recv", "one")]


def test_a_send_carries_the_senders_received_message_in_its_transaction(store: SystemDatabase) -> None:
    store.send_messages([("receiver", "t", "ping", "u1", None)])
    status = store.send_messages([("sender", "t", "pong", "u2", None)], StepWrite("receiver", 2, "DBOS.send"),
                                 received(store))
    assert status == "PENDING"
    assert steps(store, "receiver") == [(1, "DBOS.recv", "ping"), (2, "DBOS.send", None)]
    assert messages(store) == [("receiver", "t", "ping", True), ("sender", "t", "pong", False)]


def taken_elsewhere(store: SystemDatabase) -> Received:
    """"ping", as a receive holds it after another execution consumed it."""
    store.send_messages([("receiver", "t", "ping", "u1", None)])
    mine, other = received(store, 1), received(store, 1)
    store.consume_received(other)
    return mine


def test_a_send_whose_received_message_was_taken_sends_nothing(store: SystemDatabase) -> None:
    mine = taken_elsewhere(store)
    with pytest.raises(DBOSWorkflowConflictIDError, match="receiver"):
        store.send_messages([("sender", "t", "pong", "u2", None)], StepWrite("receiver", 2, "DBOS.send"), mine)
    assert steps(store, "receiver") == [(1, "DBOS.recv", "ping")]
    assert messages(store) == [("receiver", "t", "ping", True)]


def test_an_event_or_a_stream_value_carries_the_setters_received_message(store: SystemDatabase) -> None:
    store.send_messages([("receiver", "t", "one", "u1", None), ("receiver", "t", "two", "u2", None)])
    status = store.set_event("receiver", "k", "v", 2, StepWrite("receiver", 2, "DBOS.setEvent"), None,
                             received(store, 1))
    assert status == "PENDING"
    assert store.get_event("receiver", "k") == ("v", None)
    status = store.write_stream("receiver", "s", "x", 4, StepWrite("receiver", 4, "DBOS.writeStream"), None,
                                received(store, 3))
    assert status == "PENDING"
    assert store.read_stream("receiver", "s", 0) == ("x", None)
    assert steps(store, "receiver") == [(1, "DBOS.recv", "one"), (2, "DBOS.setEvent", None),
                                        (3, "DBOS.recv", "two"), (4, "DBOS.writeStream", None)]
    assert messages(store) == [("receiver", "t", "one", True), ("receiver", "t", "two", True)]


def test_an_event_whose_received_message_was_taken_is_not_set(store: SystemDatabase) -> None:
    mine = taken_elsewhere(store)
    with pytest.raises(DBOSWorkflowConflictIDError, match="receiver"):
        store.set_event("receiver", "k", "v", 2, StepWrite("receiver", 2, "DBOS.setEvent"), None, mine)
    assert store.get_event("receiver", "k") is None


def test_a_failed_send_leaves_the_received_message_unread(store: SystemDatabase) -> None:
    store.send_messages([("receiver", "t", "ping", "u1", None)])
    with pytest.raises(DBOSNonExistentWorkflowError, match="nobody"):
        store.send_messages([("nobody", "t", "pong", "u2", None)], StepWrite("receiver", 2, "DBOS.send"),
                            received(store))
    assert steps(store, "receiver") == []
    assert messages(store) == [("receiver", "t", "ping", False)]


def test_a_message_keeps_its_stored_format_into_the_receiving_step(store: SystemDatabase) -> None:
    store.send_messages([("receiver", "t", '{"a":1}', "u1", "portable_json")])
    assert store.consume_received(received(store)) == "PENDING"
    assert store.load_steps("receiver")[1].serialization == "portable_json"
    store.set_event("sender", "k", "[1]", 1, StepWrite("sender", 1, "DBOS.setEvent"), "portable_json")
    assert store.get_event("sender", "k") == ("[1]", "portable_json")
    assert store.all_events("sender") == {"k": ("[1]", "portable_json")}


def events(sysdb: SystemDatabase) -> List[Tuple[Any, ...]]:
    return rows(sysdb, "SELECT workflow_uuid, key, value FROM {events} ORDER BY key")


def test_set_event_with_a_step_keeps_latest_and_history_together(store: SystemDatabase) -> None:
    assert store.set_event("sender", "k", "v1", 1, StepWrite("sender", 1, "DBOS.setEvent")) == "PENDING"
    assert store.set_event("sender", "k", "v2", 2, StepWrite("sender", 2, "DBOS.setEvent")) == "PENDING"
    with pytest.raises(DBOSWorkflowConflictIDError, match="sender"):
        store.set_event("sender", "k", "v3", 2, StepWrite("sender", 2, "DBOS.setEvent"))
    assert events(store) == [("sender", "k", "v2")]
    assert history(store) == [(1, "k", "v1"), (2, "k", "v2")]
    # From inside a step there is no checkpoint of its own: the value is just set.
    assert store.set_event("sender", "k", "v4", 3) is None
    assert events(store) == [("sender", "k", "v4")]
    assert store.get_event("sender", "k") == ("v4", None)


def history(sysdb: SystemDatabase) -> List[Tuple[Any, ...]]:
    return rows(sysdb, "SELECT function_id, key, value FROM {history} ORDER BY function_id")
