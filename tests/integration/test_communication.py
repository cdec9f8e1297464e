"""Messages, events, streams and durable sleep, on the backend chosen with ``--backend``.

The system tables are inspected through the test's own connections
(``tests.probe``). Threads and workflows hand off through ``threading.Event``
gates and handles; ``WAIT_S`` bounds are only reached when a test is already
failing. Timeouts under test are kept to a fraction of a second.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from tests.threads import in_thread

from dbos import DBOS, DBOSConfig, SendMessage, SetWorkflowID
from dbos._engine.engine import Engine, peek_engine
from dbos.error import (
    DBOSException,
    DBOSNonExistentWorkflowError,
    DBOSStreamTimeoutError,
)
from dbos._engine.recovery import recover_one
from tests.probe import execute, qualified, query

WAIT_S = 20.0
Row = Tuple[Any, ...]


# ----------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------


def _join_launch_recovery() -> None:
    for thread in threading.enumerate():
        if thread.name == "dbos-recovery":
            thread.join(WAIT_S)
            assert not thread.is_alive(), "the launch's recovery pass did not finish"


@pytest.fixture
def launched(dbos: type[DBOS]) -> Iterator[type[DBOS]]:
    """A launched DBOS whose start-up recovery scan is over (tests set rows PENDING)."""
    _join_launch_recovery()
    yield dbos


@pytest.fixture
def quiet(config: DBOSConfig) -> Iterator[type[DBOS]]:
    """A launched DBOS with no listener and a poll interval no test could wait out."""
    settings: DBOSConfig = {**config, "notification_listener_polling_interval_sec": 1000.0,
                            "use_listen_notify": False}
    DBOS(config=settings)
    DBOS.launch()
    _join_launch_recovery()
    yield DBOS
    DBOS.destroy(destroy_registry=True)


def engine() -> Engine:
    found = peek_engine()
    assert found is not None, "DBOS is not launched"
    return found


def loaded(text: Optional[str]) -> Any:
    return engine().codec.load_value(text)


def rows(url: str, table: str, columns: str, where: str = "", params: Tuple[Any, ...] = (),
         order: str = "") -> List[Row]:
    sql = f"SELECT {columns} FROM {qualified(url, table)}"
    sql += f" WHERE {where}" if where else ""
    sql += f" ORDER BY {order}" if order else ""
    return query(url, sql, params)


def step_names(url: str, workflow_id: str) -> List[Tuple[int, str]]:
    found = rows(url, "operation_outputs", "function_id, function_name", "workflow_uuid = %s",
                 (workflow_id,), "function_id")
    return [(int(r[0]), str(r[1])) for r in found]


def step_output(url: str, workflow_id: str, function_id: int) -> Any:
    found = rows(url, "operation_outputs", "output", "workflow_uuid = %s AND function_id = %s",
                 (workflow_id, function_id))
    assert len(found) == 1, f"no step {function_id} recorded for {workflow_id}"
    return loaded(found[0][0])


def messages_to(url: str, destination: str) -> List[Tuple[Optional[str], Any, bool]]:
    """(topic, message, consumed) of every notification to ``destination``."""
    found = rows(url, "notifications", "topic, message, consumed", "destination_uuid = %s",
                 (destination,), "message")
    return sorted((r[0], loaded(r[1]), bool(r[2])) for r in found)


def count(url: str, table: str, where: str = "", params: Tuple[Any, ...] = ()) -> int:
    return int(rows(url, table, "COUNT(*)", where, params)[0][0])


def back_to_pending(url: str, workflow_id: str) -> None:
    table = qualified(url, "workflow_status")
    execute(url, f"UPDATE {table} SET status = 'PENDING', output = NULL, error = NULL "
                 "WHERE workflow_uuid = %s", (workflow_id,))


def recover(url: str, workflow_id: str) -> Any:
    """Make a finished workflow look interrupted, recover it here, return its result."""
    back_to_pending(url, workflow_id)
    return recover_one(engine(), workflow_id).get_result()




def joined(thread: threading.Thread, box: Dict[str, Any]) -> Any:
    thread.join(WAIT_S)
    assert not thread.is_alive(), "the waiter was not woken"
    if "error" in box:
        raise box["error"]
    return box["result"]


def name_of(func: Callable[..., Any]) -> str:
    return str(getattr(func, "dbos_function_name"))


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------------
# send / recv
# ----------------------------------------------------------------------


def test_topics_keep_messages_apart_and_no_topic_is_its_own_topic(
    launched: type[DBOS], sys_db_url: str
) -> None:
    gate = threading.Event()

    @DBOS.workflow()
    def receiver() -> List[Any]:
        gate.wait(WAIT_S)
        return [DBOS.recv("other", 0.1), DBOS.recv("a", 5), DBOS.recv(None, 5),
                DBOS.recv(timeout_seconds=0.1), DBOS.recv("b", 5), DBOS.recv("a", 0.1)]

    handle = DBOS.start_workflow(receiver)
    wid = handle.workflow_id
    DBOS.send(wid, "plain")
    DBOS.send(wid, {"for": "b"}, "b")
    DBOS.send(wid, ["for", "a"], topic="a")
    gate.set()
    assert handle.get_result() == [None, ["for", "a"], "plain", None, {"for": "b"}, None]
    # The untopiced message is stored under the null-topic marker, and nothing is deleted.
    assert messages_to(sys_db_url, wid) == sorted([
        ("__null__topic__", "plain", True), ("b", {"for": "b"}, True), ("a", ["for", "a"], True)])


def test_async_send_and_recv(launched: type[DBOS], sys_db_url: str) -> None:
    @DBOS.workflow()
    async def receiver() -> List[Any]:
        first = await DBOS.recv_async("t", 5)
        second = await DBOS.recv_async("t", 5)
        return [first, second, await DBOS.recv_async("t", 0.1)]

    async def main() -> List[Any]:
        handle = await DBOS.start_workflow_async(receiver)
        await DBOS.send_async(handle.workflow_id, 1, "t")
        await DBOS.send_async(handle.workflow_id, 2, topic="t")
        result: List[Any] = await handle.get_result()
        return result

    assert asyncio.run(main()) == [1, 2, None]


def test_many_messages_in_one_millisecond_arrive_in_order(
    launched: type[DBOS], sys_db_url: str
) -> None:
    gate = threading.Event()
    total = 40

    @DBOS.workflow()
    def receiver() -> Tuple[List[Any], List[Any]]:
        gate.wait(WAIT_S)
        mine = [DBOS.recv("seq", 5) for _ in range(total)]
        others = [DBOS.recv("odd", 5) for _ in range(total // 2)]
        return mine, others

    handle = DBOS.start_workflow(receiver)
    wid = handle.workflow_id
    # One bulk call stamps every row with the same millisecond; the order must still hold.
    DBOS.send_bulk([SendMessage(wid, n, "seq") if n % 2 == 0 else SendMessage(wid, n, "odd")
                    for n in range(total)])
    DBOS.send_bulk([SendMessage(wid, n, "seq") for n in range(total, total + total // 2)])
    stamps = rows(sys_db_url, "notifications", "created_at_epoch_ms", "destination_uuid = %s", (wid,))
    assert len({r[0] for r in stamps}) < len(stamps), "the bulk shares a millisecond"
    gate.set()
    mine, others = handle.get_result()
    assert mine == [n for n in range(total) if n % 2 == 0] + list(range(total, total + total // 2))
    assert others == [n for n in range(total) if n % 2 == 1]


def test_recv_timeout_returns_none_and_is_recorded(launched: type[DBOS], sys_db_url: str) -> None:
    @DBOS.workflow()
    def waits() -> Tuple[Any, float]:
        began = time.monotonic()
        got = DBOS.recv("nothing", 0.2)
        return got, time.monotonic() - began

    wid = new_id("timeout")
    with SetWorkflowID(wid):
        got, waited = waits()
    assert got is None and 0.2 <= waited < 5
    assert step_names(sys_db_url, wid) == [(1, "DBOS.recv"), (2, "DBOS.sleep")]
    assert step_output(sys_db_url, wid, 1) is None
    # A message arriving after the timeout is not taken by a replay.
    DBOS.send(wid, "late", "nothing")
    got_again, _ = recover(sys_db_url, wid)
    assert got_again is None
    assert messages_to(sys_db_url, wid) == [("nothing", "late", False)]


def test_recv_of_a_waiting_message_records_no_sleep_but_keeps_its_id(
    launched: type[DBOS], sys_db_url: str
) -> None:
    gate = threading.Event()

    @DBOS.step()
    def opened() -> None:
        assert gate.wait(WAIT_S)

    @DBOS.step()
    def after(got: Any) -> Any:
        return got

    @DBOS.workflow()
    def takes_waiting() -> Any:
        opened()
        return after(DBOS.recv("t", 5))

    wid = new_id("waiting")
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(takes_waiting)
    DBOS.send(wid, "already here", "t")
    gate.set()
    assert handle.get_result() == "already here"
    # Consumed at once: no wake-up time to record, but the sleep's ID stays taken.
    assert step_names(sys_db_url, wid) == [(1, name_of(opened)), (2, "DBOS.recv"), (4, name_of(after))]
    DBOS.send(wid, "later", "t")
    assert recover(sys_db_url, wid) == "already here"
    assert messages_to(sys_db_url, wid) == [("t", "already here", True), ("t", "later", False)]


def test_replay_returns_recorded_messages_without_consuming_new_ones(
    launched: type[DBOS], sys_db_url: str
) -> None:
    calls: List[str] = []

    @DBOS.workflow()
    def receiver() -> List[Any]:
        calls.append("body")
        return [DBOS.recv(timeout_seconds=5), DBOS.recv("x", 5)]

    wid = new_id("replay")
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(receiver)
    DBOS.send(wid, "first")
    DBOS.send(wid, "second", "x")
    assert handle.get_result() == ["first", "second"]
    DBOS.send(wid, "third")
    DBOS.send(wid, "fourth", "x")
    assert recover(sys_db_url, wid) == ["first", "second"]
    assert calls == ["body", "body"]
    assert count(sys_db_url, "notifications", "destination_uuid = %s AND consumed = %s",
                 (wid, True)) == 2
    assert sorted(m for _, m, consumed in messages_to(sys_db_url, wid) if not consumed) == [
        "fourth", "third"]


def test_idempotency_key_delivers_once_per_destination(launched: type[DBOS], sys_db_url: str) -> None:
    @DBOS.workflow()
    def receiver() -> List[Any]:
        return [DBOS.recv(timeout_seconds=5), DBOS.recv(timeout_seconds=0.1)]

    one, two = DBOS.start_workflow(receiver), DBOS.start_workflow(receiver)
    for _ in range(3):
        DBOS.send(one.workflow_id, "once", idempotency_key="key-1")
    DBOS.send(two.workflow_id, "once", idempotency_key="key-1")
    assert one.get_result() == ["once", None]
    assert two.get_result() == ["once", None]
    uuids = rows(sys_db_url, "notifications", "message_uuid", order="message_uuid")
    assert [r[0] for r in uuids] == sorted([f"key-1::{one.workflow_id}", f"key-1::{two.workflow_id}"])


def test_send_to_a_missing_workflow_raises_and_writes_nothing(
    launched: type[DBOS], sys_db_url: str
) -> None:
    with pytest.raises(DBOSNonExistentWorkflowError) as info:
        DBOS.send("no-such-workflow", "hello")
    assert "no-such-workflow" in str(info.value)
    assert info.value.destination_id == "no-such-workflow"
    with pytest.raises(DBOSNonExistentWorkflowError, match="async-nobody"):
        asyncio.run(DBOS.send_async("async-nobody", "hello", "t"))
    assert count(sys_db_url, "notifications") == 0


def test_send_in_a_workflow_is_one_checkpointed_step(launched: type[DBOS], sys_db_url: str) -> None:
    @DBOS.workflow()
    def receiver() -> List[Any]:
        return [DBOS.recv(timeout_seconds=5) for _ in range(3)]

    target = DBOS.start_workflow(receiver)

    @DBOS.step()
    def send_from_step(destination: str) -> None:
        DBOS.send(destination, "from step")

    @DBOS.workflow()
    def sender(destination: str) -> None:
        DBOS.send(destination, "from workflow")
        DBOS.send_bulk([SendMessage(destination, "from bulk")])
        send_from_step(destination)

    wid = new_id("sender")
    with SetWorkflowID(wid):
        sender(target.workflow_id)
    assert step_names(sys_db_url, wid) == [
        (1, "DBOS.send"), (2, "DBOS.send_bulk"), (3, name_of(send_from_step))]
    assert sorted(target.get_result()) == ["from bulk", "from step", "from workflow"]
    recover(sys_db_url, wid)
    assert count(sys_db_url, "notifications") == 3, "a replay sends nothing again"


def test_recv_outside_a_workflow_or_in_a_step_raises(launched: type[DBOS]) -> None:
    with pytest.raises(DBOSException, match="within a workflow"):
        DBOS.recv("t", 0.1)
    with pytest.raises(DBOSException, match="within a workflow"):
        asyncio.run(DBOS.recv_async("t", 0.1))

    @DBOS.step()
    def receiving_step() -> Any:
        return DBOS.recv("t", 0.1)

    @DBOS.workflow()
    def wf() -> str:
        try:
            receiving_step()
        except DBOSException as exc:
            return f"refused: {exc}"
        return "accepted"

    assert wf().startswith("refused")


def test_send_bulk_is_atomic_and_checks_keys(launched: type[DBOS], sys_db_url: str) -> None:
    @DBOS.workflow()
    def receiver() -> Any:
        return DBOS.recv(timeout_seconds=0.1)

    handle = DBOS.start_workflow(receiver)
    real = handle.workflow_id
    with pytest.raises(DBOSNonExistentWorkflowError, match="ghost"):
        DBOS.send_bulk([SendMessage(real, "a"), SendMessage("ghost", "b"), SendMessage(real, "c")])
    assert count(sys_db_url, "notifications") == 0
    with pytest.raises(DBOSException, match="idempotency key"):
        DBOS.send_bulk([SendMessage(real, 1, idempotency_key="dup"),
                        SendMessage(real, 2, idempotency_key="dup")])
    assert count(sys_db_url, "notifications") == 0
    DBOS.send_bulk([])
    asyncio.run(DBOS.send_bulk_async([]))
    assert count(sys_db_url, "notifications") == 0
    assert handle.get_result() is None
    # A finished destination still takes messages; nobody will read them.
    asyncio.run(DBOS.send_bulk_async([SendMessage(real, "x", "t", "k"), SendMessage(real, "y")]))
    assert messages_to(sys_db_url, real) == [("__null__topic__", "y", False), ("t", "x", False)]
    keyed = rows(sys_db_url, "notifications", "message_uuid", "topic = %s", ("t",))
    assert keyed == [(f"k::{real}",)]


# ----------------------------------------------------------------------
# Events
# ----------------------------------------------------------------------


def test_set_and_get_events_latest_wins(launched: type[DBOS], sys_db_url: str) -> None:
    @DBOS.workflow()
    def publisher() -> None:
        DBOS.set_event("state", "started")
        DBOS.set_event("state", "done")
        DBOS.set_event("detail", {"n": 3})

    wid = new_id("events")
    with SetWorkflowID(wid):
        publisher()
    assert DBOS.get_event(wid, "state", 1) == "done"
    assert DBOS.get_all_events(wid) == {"state": "done", "detail": {"n": 3}}
    assert asyncio.run(DBOS.get_all_events_async(wid)) == {"state": "done", "detail": {"n": 3}}
    assert step_names(sys_db_url, wid) == [(1, "DBOS.setEvent"), (2, "DBOS.setEvent"), (3, "DBOS.setEvent")]
    history = rows(sys_db_url, "workflow_events_history", "function_id, key, value",
                   "workflow_uuid = %s", (wid,), "function_id")
    assert [(r[0], r[1], loaded(r[2])) for r in history] == [
        (1, "state", "started"), (2, "state", "done"), (3, "detail", {"n": 3})]
    # A replay does not write the events again.
    recover(sys_db_url, wid)
    assert count(sys_db_url, "workflow_events_history", "workflow_uuid = %s", (wid,)) == 3


def test_get_event_waits_for_the_value_and_times_out(launched: type[DBOS]) -> None:
    gate = threading.Event()

    @DBOS.workflow()
    def publisher() -> None:
        gate.wait(WAIT_S)
        DBOS.set_event("ready", True)

    handle = DBOS.start_workflow(publisher)
    began = time.monotonic()
    assert DBOS.get_event(handle.workflow_id, "ready", 0.2) is None
    assert time.monotonic() - began >= 0.2
    thread, box = in_thread(lambda: DBOS.get_event(handle.workflow_id, "ready", WAIT_S))
    gate.set()
    assert joined(thread, box) is True
    assert DBOS.get_event("no-such-workflow", "ready", 0.1) is None
    handle.get_result()


def test_async_events(launched: type[DBOS]) -> None:
    @DBOS.workflow()
    async def publisher() -> Dict[str, Any]:
        await DBOS.set_event_async("k", 1)
        await DBOS.set_event_async("k", 2)
        return await DBOS.get_all_events_async(DBOS.workflow_id or "")

    async def main() -> Tuple[Any, Any, Any]:
        handle = await DBOS.start_workflow_async(publisher)
        events = await handle.get_result()
        value = await DBOS.get_event_async(handle.workflow_id, "k", 1)
        missing = await DBOS.get_event_async(handle.workflow_id, "absent", 0.1)
        return events, value, missing

    assert asyncio.run(main()) == ({"k": 2}, 2, None)


def test_get_event_in_a_workflow_is_checkpointed(launched: type[DBOS], sys_db_url: str) -> None:
    @DBOS.workflow()
    def publisher() -> None:
        DBOS.set_event("k", "original")

    @DBOS.workflow()
    def watcher(target: str) -> Tuple[Any, Any, Dict[str, Any]]:
        return DBOS.get_event(target, "k", 5), DBOS.get_event(target, "gone", 0.1), \
            DBOS.get_all_events(target)

    target = new_id("target")
    with SetWorkflowID(target):
        publisher()
    wid = new_id("watcher")
    with SetWorkflowID(wid):
        first = watcher(target)
    assert first == ("original", None, {"k": "original"})
    # An event already set needs no timeout; one waited for records its wake-up time.
    assert step_names(sys_db_url, wid) == [(1, "DBOS.getEvent"), (3, "DBOS.getEvent"),
                                           (4, "DBOS.sleep"), (5, "DBOS.get_events")]
    changed = engine().codec.dump_value("changed", what="a test value")
    execute(sys_db_url, f"UPDATE {qualified(sys_db_url, 'workflow_events')} SET value = %s "
                        "WHERE workflow_uuid = %s", (changed, target))
    assert DBOS.get_event(target, "k", 1) == "changed"
    assert recover(sys_db_url, wid) == first


def test_set_event_in_a_step_uses_the_steps_function_id(launched: type[DBOS], sys_db_url: str) -> None:
    @DBOS.step()
    def progress() -> None:
        DBOS.set_event("progress", 1)
        DBOS.set_event("progress", 2)

    @DBOS.workflow()
    def wf() -> None:
        progress()
        DBOS.set_event("progress", 3)

    wid = new_id("stepevent")
    with SetWorkflowID(wid):
        wf()
    assert step_names(sys_db_url, wid) == [(1, name_of(progress)),
                                           (2, "DBOS.setEvent")]
    history = rows(sys_db_url, "workflow_events_history", "function_id, value",
                   "workflow_uuid = %s", (wid,), "function_id")
    assert [(r[0], loaded(r[1])) for r in history] == [(1, 2), (2, 3)]
    assert DBOS.get_event(wid, "progress", 1) == 3


def test_set_event_outside_a_workflow_raises(launched: type[DBOS], sys_db_url: str) -> None:
    with pytest.raises(DBOSException, match="within a workflow"):
        DBOS.set_event("k", 1)
    with pytest.raises(DBOSException, match="within a workflow"):
        asyncio.run(DBOS.set_event_async("k", 1))
    assert count(sys_db_url, "workflow_events") == 0


# ----------------------------------------------------------------------
# Streams
# ----------------------------------------------------------------------


def test_stream_written_closed_and_read_in_order(launched: type[DBOS], sys_db_url: str) -> None:
    @DBOS.workflow()
    def writer() -> None:
        for n in range(4):
            DBOS.write_stream("numbers", {"n": n})
        DBOS.close_stream("numbers")
        DBOS.write_stream("numbers", "after close")

    wid = new_id("writer")
    with SetWorkflowID(wid):
        writer()
    assert list(DBOS.read_stream(wid, "numbers")) == [{"n": n} for n in range(4)]
    assert list(DBOS.read_stream(wid, "numbers", offset=2)) == [{"n": 2}, {"n": 3}]
    assert list(DBOS.read_stream(wid, "numbers", offset=4)) == []
    assert list(DBOS.read_stream(wid, "other")) == [], "the writer is done: nothing comes"
    assert step_names(sys_db_url, wid) == [(n, "DBOS.writeStream") for n in range(1, 5)] + [
        (5, "DBOS.closeStream"), (6, "DBOS.writeStream")]
    stored = rows(sys_db_url, "streams", '"offset", function_id', "workflow_uuid = %s", (wid,),
                  '"offset"')
    assert [(int(r[0]), int(r[1])) for r in stored] == [(n, n + 1) for n in range(6)]
    recover(sys_db_url, wid)
    assert count(sys_db_url, "streams", "workflow_uuid = %s", (wid,)) == 6, "replay writes nothing"


def test_stream_ends_when_the_writer_finishes_without_closing(launched: type[DBOS]) -> None:
    gate = threading.Event()

    @DBOS.step()
    def write_in_step(value: str) -> None:
        DBOS.write_stream("s", value)

    @DBOS.workflow()
    def writer() -> str:
        DBOS.write_stream("s", "a")
        write_in_step("b")
        gate.wait(WAIT_S)
        DBOS.write_stream("s", "c")
        return "done"

    handle = DBOS.start_workflow(writer)
    values = DBOS.read_stream(handle.workflow_id, "s")
    assert next(values) == "a"
    assert next(values) == "b"
    gate.set()
    # The rest is drained after the writer ended, then the stream stops.
    assert list(values) == ["c"]
    assert handle.get_result() == "done"


def test_read_stream_errors(launched: type[DBOS]) -> None:
    gate = threading.Event()

    @DBOS.workflow()
    def writer() -> None:
        DBOS.write_stream("s", "first")
        gate.wait(WAIT_S)
        DBOS.close_stream("s")

    with pytest.raises(DBOSNonExistentWorkflowError, match="no-such-writer"):
        list(DBOS.read_stream("no-such-writer", "s"))
    handle = DBOS.start_workflow(writer)
    with pytest.raises(ValueError):
        list(DBOS.read_stream(handle.workflow_id, "s", timeout_seconds=-1))
    values = DBOS.read_stream(handle.workflow_id, "s", timeout_seconds=0.2)
    assert next(values) == "first"
    began = time.monotonic()
    with pytest.raises(DBOSStreamTimeoutError) as info:
        next(values)
    assert time.monotonic() - began >= 0.2
    assert info.value.workflow_id == handle.workflow_id and info.value.key == "s"
    gate.set()
    handle.get_result()
    assert list(DBOS.read_stream(handle.workflow_id, "s", timeout_seconds=0.2)) == ["first"]
    with pytest.raises(DBOSException, match="within a workflow"):
        DBOS.write_stream("s", 1)
    with pytest.raises(DBOSException, match="within a workflow"):
        DBOS.close_stream("s")


def test_a_reading_workflow_replays_the_same_sequence(launched: type[DBOS], sys_db_url: str) -> None:
    gate, written = threading.Event(), threading.Event()

    @DBOS.workflow()
    def writer() -> None:
        DBOS.write_stream("s", 1)
        DBOS.write_stream("s", 2)
        written.set()
        gate.wait(WAIT_S)
        DBOS.write_stream("s", 3)
        DBOS.close_stream("s")

    @DBOS.workflow()
    def reader(target: str) -> Tuple[List[Any], str]:
        got: List[Any] = []
        try:
            for value in DBOS.read_stream(target, "s", timeout_seconds=0.2):
                got.append(value)
        except DBOSStreamTimeoutError:
            return got, "timed out"
        return got, "ended"

    source = DBOS.start_workflow(writer)
    assert written.wait(WAIT_S)
    wid = new_id("reader")
    with SetWorkflowID(wid):
        first = reader(source.workflow_id)
    assert first == ([1, 2], "timed out")
    gate.set()
    source.get_result()
    # The stream now has more, and then loses everything: a replay sees neither.
    assert recover(sys_db_url, wid) == first
    execute(sys_db_url, f"DELETE FROM {qualified(sys_db_url, 'streams')} WHERE workflow_uuid = %s",
            (source.workflow_id,))
    assert recover(sys_db_url, wid) == first
    assert [name for _, name in step_names(sys_db_url, wid)] == ["DBOS.readStream"] * 3


def test_a_reading_workflow_records_the_end_of_the_stream(launched: type[DBOS], sys_db_url: str) -> None:
    @DBOS.workflow()
    def writer() -> None:
        DBOS.write_stream("s", "x")
        DBOS.write_stream("s", "y")
        DBOS.close_stream("s")

    @DBOS.workflow()
    def reader(target: str) -> List[Any]:
        return list(DBOS.read_stream(target, "s"))

    source = new_id("source")
    with SetWorkflowID(source):
        writer()
    wid = new_id("reader")
    with SetWorkflowID(wid):
        assert reader(source) == ["x", "y"]
    assert step_names(sys_db_url, wid) == [(1, "DBOS.readStream"), (2, "DBOS.readStream"),
                                           (3, "DBOS.readStream")]
    execute(sys_db_url, f"DELETE FROM {qualified(sys_db_url, 'streams')} WHERE workflow_uuid = %s",
            (source,))
    assert list(DBOS.read_stream(source, "s")) == []
    assert recover(sys_db_url, wid) == ["x", "y"]


def test_async_streams(launched: type[DBOS], sys_db_url: str) -> None:
    @DBOS.workflow()
    async def writer() -> None:
        for word in ("one", "two", "three"):
            await DBOS.write_stream_async("words", word)
        await DBOS.close_stream_async("words")

    @DBOS.workflow()
    async def reader(target: str) -> List[Any]:
        return [w async for w in DBOS.read_stream_async(target, "words", offset=1)]

    async def main() -> Tuple[List[Any], List[Any]]:
        handle = await DBOS.start_workflow_async(writer)
        outside = [w async for w in DBOS.read_stream_async(handle.workflow_id, "words")]
        with SetWorkflowID(wid):
            inside = await reader(handle.workflow_id)
        await handle.get_result()
        return outside, inside

    wid = new_id("async-reader")
    assert asyncio.run(main()) == (["one", "two", "three"], ["two", "three"])
    assert step_names(sys_db_url, wid) == [(n, "DBOS.readStream") for n in (1, 2, 3)]


# ----------------------------------------------------------------------
# Durable sleep
# ----------------------------------------------------------------------


def test_sleep_records_its_wake_time(launched: type[DBOS], sys_db_url: str) -> None:
    @DBOS.step()
    def mark() -> str:
        return "marked"

    @DBOS.workflow()
    def napper() -> float:
        DBOS.sleep(0)
        DBOS.sleep(-3)
        began = time.time()
        DBOS.sleep(0.2)
        mark()
        return began

    wid = new_id("nap")
    with SetWorkflowID(wid):
        began = napper()
    assert step_names(sys_db_url, wid) == [(1, "DBOS.sleep"), (2, name_of(mark))]
    wake = step_output(sys_db_url, wid, 1)
    assert began + 0.2 <= wake < began + 2
    completed = rows(sys_db_url, "operation_outputs", "completed_at_epoch_ms",
                     "workflow_uuid = %s AND function_id = 1", (wid,))[0][0]
    assert abs(int(completed) - wake * 1000) <= 1
    # A replay long after the wake time does not sleep again.
    began_replay = time.monotonic()
    recover(sys_db_url, wid)
    assert time.monotonic() - began_replay < 0.2 + 5
    assert step_names(sys_db_url, wid)[0] == (1, "DBOS.sleep")


def test_sleep_outside_a_workflow_or_in_a_step(launched: type[DBOS]) -> None:
    with pytest.raises(DBOSException, match="within a workflow"):
        DBOS.sleep(0.1)
    with pytest.raises(DBOSException, match="within a workflow"):
        asyncio.run(DBOS.sleep_async(0.1))

    @DBOS.step()
    def sleepy_step() -> None:
        DBOS.sleep(0.1)

    @DBOS.workflow()
    def wf() -> str:
        try:
            sleepy_step()
        except AssertionError:
            return "refused"
        return "slept"

    assert wf() == "refused"


def test_async_sleep(launched: type[DBOS], sys_db_url: str) -> None:
    @DBOS.workflow()
    async def napper() -> float:
        began = time.monotonic()
        await DBOS.sleep_async(0)
        await DBOS.sleep_async(0.2)
        return time.monotonic() - began

    wid = new_id("anap")

    async def main() -> float:
        with SetWorkflowID(wid):
            handle = await DBOS.start_workflow_async(napper)
        result: float = await handle.get_result()
        return result

    assert asyncio.run(main()) >= 0.2
    assert step_names(sys_db_url, wid) == [(1, "DBOS.sleep")]


NAPPER_APP = textwrap.dedent(
    """
    import sys, threading, time
    from dbos import DBOS, DBOSConfig, SetWorkflowID

    @DBOS.workflow()
    def napper(seconds: float) -> float:
        DBOS.sleep(seconds)
        return time.time()

    mode, url, workflow_id, seconds = sys.argv[1:5]
    DBOS(config=DBOSConfig(name="napper", system_database_url=url, application_version="v1"))
    DBOS.launch()
    if mode == "start":
        with SetWorkflowID(workflow_id):
            DBOS.start_workflow(napper, float(seconds))
        threading.Event().wait()  # sleeps until killed
    else:
        print(f"RESULT {DBOS.retrieve_workflow(workflow_id).get_result()!r}", flush=True)
        DBOS.destroy()
    """
)


def _recorded_wake(url: str, workflow_id: str, child: "subprocess.Popen[str]") -> float:
    """The wake time the sleeping child recorded (polls the database for the row)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        assert child.poll() is None, f"the child exited: {child.communicate()[1]}"
        found = rows(url, "operation_outputs", "output, function_name",
                     "workflow_uuid = %s AND function_id = 1", (workflow_id,))
        if found:
            assert found[0][1] == "DBOS.sleep"
            return float(loaded(found[0][0]))
        time.sleep(0.05)
    raise AssertionError("the child never recorded its sleep")


def test_sleep_survives_a_crash_and_ends_at_the_planned_time(
    launched: type[DBOS], sys_db_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "napper_app.py"
    script.write_text(NAPPER_APP)
    wid, seconds = new_id("durable-nap"), 4.0
    command = [sys.executable, str(script), "start", sys_db_url, wid, str(seconds)]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wake = _recorded_wake(sys_db_url, wid, first)
        # Stage the crash half-way through the sleep (timing of the scenario,
        # not synchronisation: the row above says the sleep is under way).
        time.sleep(max(0.0, wake - seconds / 2 - time.time()))
        killed_at = time.time()
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=WAIT_S)
    assert killed_at < wake, "the crash happened mid-sleep"
    command[2] = "resume"
    restarted_at = time.time()
    second = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    finished = float(second.stdout.split("RESULT ")[1])
    assert finished >= wake, "the sleep ended before its recorded wake time"
    # A sleep that started over would end a full duration after the restart.
    assert finished < restarted_at + seconds, "the recovered sleep started over"
    assert step_names(sys_db_url, wid) == [(1, "DBOS.sleep")]
    status = rows(sys_db_url, "workflow_status", "status, recovery_attempts", "workflow_uuid = %s", (wid,))
    assert status[0][0] == "SUCCESS" and int(status[0][1]) >= 2


# ----------------------------------------------------------------------
# Local wake-ups, with polling and LISTEN out of the picture
# ----------------------------------------------------------------------


def test_local_send_wakes_a_waiting_recv(quiet: type[DBOS]) -> None:
    @DBOS.workflow()
    def receiver() -> List[Any]:
        return [DBOS.recv("t", WAIT_S), DBOS.recv(timeout_seconds=WAIT_S)]

    handle = DBOS.start_workflow(receiver)
    thread, box = in_thread(handle.get_result)
    DBOS.send(handle.workflow_id, "hello", "t")
    DBOS.send_bulk([SendMessage(handle.workflow_id, "bulk")])
    assert joined(thread, box) == ["hello", "bulk"]


def test_local_send_from_another_workflow_wakes_recv_async(quiet: type[DBOS]) -> None:
    @DBOS.workflow()
    async def receiver() -> Any:
        return await DBOS.recv_async("t", WAIT_S)

    @DBOS.workflow()
    async def sender(target: str) -> None:
        await DBOS.send_async(target, "async hello", "t")

    async def main() -> Any:
        handle = await DBOS.start_workflow_async(receiver)
        await sender(handle.workflow_id)
        return await asyncio.wait_for(handle.get_result(), WAIT_S)

    assert asyncio.run(main()) == "async hello"


def test_local_set_event_wakes_get_event(quiet: type[DBOS]) -> None:
    gate = threading.Event()

    @DBOS.step()
    def announce() -> None:
        DBOS.set_event("from-step", "step value")

    @DBOS.workflow()
    def publisher() -> None:
        gate.wait(WAIT_S)
        DBOS.set_event("ready", "yes")
        announce()

    @DBOS.workflow()
    def watcher(target: str) -> Any:
        return DBOS.get_event(target, "from-step", WAIT_S)

    handle = DBOS.start_workflow(publisher)
    outside, outside_box = in_thread(lambda: DBOS.get_event(handle.workflow_id, "ready", WAIT_S))
    inside = DBOS.start_workflow(watcher, handle.workflow_id)
    inside_thread, inside_box = in_thread(inside.get_result)
    gate.set()
    assert joined(outside, outside_box) == "yes"
    assert joined(inside_thread, inside_box) == "step value"


def test_local_stream_writes_and_the_writers_end_wake_readers(quiet: type[DBOS]) -> None:
    gates = [threading.Event(), threading.Event()]

    @DBOS.workflow()
    def writer() -> None:
        gates[0].wait(WAIT_S)
        DBOS.write_stream("s", "written")
        gates[1].wait(WAIT_S)
        # Ends without closing: readers must notice the end, not poll for it.

    handle = DBOS.start_workflow(writer)
    values = DBOS.read_stream(handle.workflow_id, "s")
    thread, box = in_thread(lambda: next(values))
    gates[0].set()
    assert joined(thread, box) == "written"
    thread, box = in_thread(lambda: list(values))
    gates[1].set()
    assert joined(thread, box) == []
    handle.get_result()


def test_recv_and_sleep_timeouts_do_not_wait_for_the_poll_interval(quiet: type[DBOS]) -> None:
    @DBOS.workflow()
    def waits() -> Any:
        DBOS.sleep(0.1)
        return DBOS.recv("t", 0.1), DBOS.get_event(DBOS.workflow_id or "", "k", 0.1)

    thread, box = in_thread(waits)
    assert joined(thread, box) == (None, None)
