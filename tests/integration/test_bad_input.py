"""Workflow IDs and list filters that cannot be stored are refused before
anything is written, with the same DBOS error on both backends.

PostgreSQL cannot hold a NUL in text nor index a megabyte of ID, SQLite can:
without the check in dbos/_sysdb/ids.py a NUL reaches PostgreSQL users as a
raw ValueError and a huge ID fails inside the index. Counts too large for a
bigint and times Python cannot convert are refused in dbos/_ops/filters.py.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterator, List

import pytest

from dbos import DBOS, DBOSClient, EnqueueOptions, Queue, SetWorkflowID
from dbos.error import DBOSException, DBOSInvalidArgumentError

from .sysdb_sql import engine

queue = Queue("bad-input-q")

# The bad IDs, each with words its error must contain to name the rule broken.
BAD_IDS = {
    "nul": ("order\x0042", "NUL"),
    "one_megabyte": ("x" * 1_000_000, "at most 1024 bytes"),
    "lone_surrogate": ("order-\ud800", "lone surrogates"),
}
TABLES = ("workflow_status", "operation_outputs", "notifications", "workflow_events",
          "workflow_events_history", "streams", "queues", "workflow_schedules")


@DBOS.workflow()
def echo(x: int) -> int:
    return x


@pytest.fixture
def client(dbos: type[DBOS], sys_db_url: str) -> Iterator[DBOSClient]:
    client = DBOSClient(system_database_url=sys_db_url)
    yield client
    client.destroy()


def row_counts() -> Dict[str, int]:
    """Rows in every system table, read in one go."""
    sysdb = engine().sysdb

    def count() -> Dict[str, int]:
        return {table: int(sysdb.execute(f"SELECT COUNT(*) FROM {sysdb.backend.qualified(table)}",
                                         []).fetchone()[0]) for table in TABLES}

    return sysdb.run(count, transaction=False)


def start_with_id(workflow_id: str) -> Any:
    with SetWorkflowID(workflow_id):
        return DBOS.start_workflow(echo, 1)


def enqueue_with_id(workflow_id: str) -> Any:
    with SetWorkflowID(workflow_id):
        return queue.enqueue(echo, 1)


def entry_points(client: DBOSClient) -> Dict[str, Callable[[str], Any]]:
    """Every way in that a test below tries, by name."""
    return {
        "start_workflow": start_with_id,
        "queue.enqueue": enqueue_with_id,
        "client.enqueue": lambda wid: client.enqueue(
            EnqueueOptions(workflow_name="echo", queue_name=queue.name, workflow_id=wid), 1),
        "retrieve_workflow": DBOS.retrieve_workflow,
        "client.retrieve_workflow": client.retrieve_workflow,
        "send": lambda wid: DBOS.send(wid, "hello"),
        "client.send": lambda wid: client.send(wid, "hello"),
        "get_event": lambda wid: DBOS.get_event(wid, "k", timeout_seconds=0),
        "read_stream": lambda wid: list(DBOS.read_stream(wid, "k")),
        "cancel_workflow": DBOS.cancel_workflow,
        "resume_workflow": DBOS.resume_workflow,
        "fork_workflow": lambda wid: DBOS.fork_workflow(wid, 1),
        "list_workflows": lambda wid: DBOS.list_workflows(workflow_ids=[wid]),
        "list_workflow_steps": DBOS.list_workflow_steps,
    }


@pytest.mark.parametrize("kind", sorted(BAD_IDS))
def test_a_bad_workflow_id_is_refused_everywhere_and_nothing_is_written(
        dbos: type[DBOS], client: DBOSClient, kind: str) -> None:
    bad_id, rule = BAD_IDS[kind]
    assert echo(7) == 7  # something to leave unchanged
    before = row_counts()
    refused: List[str] = []
    for name, call in entry_points(client).items():
        with pytest.raises(DBOSInvalidArgumentError) as caught:
            call(bad_id)
        assert rule in str(caught.value), f"{name}: {caught.value}"
        assert len(str(caught.value)) < 400, f"{name} shows the whole ID"
        refused.append(name)
    assert row_counts() == before
    assert len(refused) == len(entry_points(client))


def test_the_longest_id_allowed_works_on_both_backends(dbos: type[DBOS]) -> None:
    longest = "é" * 512  # 1024 bytes in UTF-8
    assert start_with_id(longest).get_result() == 1
    assert DBOS.retrieve_workflow(longest).get_status().status == "SUCCESS"
    with pytest.raises(DBOSInvalidArgumentError, match="at most 1024 bytes in UTF-8, this one is 1025"):
        start_with_id(longest + "x")


@pytest.mark.parametrize("filters, argument", [
    ({"limit": 10**20}, "limit"),
    ({"limit": -1}, "limit"),
    ({"offset": -5}, "offset"),
    ({"offset": 2**63}, "offset"),
    ({"limit": 2.5}, "limit"),
    ({"limit": True}, "limit"),
    ({"start_time": "not a time"}, "start_time"),
    ({"end_time": "99999-01-01T00:00:00"}, "end_time"),
    ({"completed_after": "0000-01-01T00:00:00"}, "completed_after"),
    ({"dequeued_before": 12345}, "dequeued_before"),
    ({"workflow_id_prefix": "a\x00"}, "workflow_id_prefix"),
])
def test_list_filters_out_of_range_are_refused_cleanly(
        dbos: type[DBOS], client: DBOSClient, filters: Dict[str, Any], argument: str) -> None:
    assert echo(3) == 3
    before = row_counts()
    for lister in (DBOS.list_workflows, DBOS.list_queued_workflows, client.list_workflows):
        with pytest.raises(DBOSInvalidArgumentError) as caught:
            lister(**filters)
        assert caught.value.argument == argument, str(caught.value)
    assert row_counts() == before


def test_step_listing_counts_are_checked_too(dbos: type[DBOS]) -> None:
    handle = start_with_id("steps-listed")
    handle.get_result()
    for bad in ({"limit": 10**20}, {"offset": -1}):
        with pytest.raises(DBOSException, match="non-negative integer"):
            DBOS.list_workflow_steps("steps-listed", **bad)


def test_the_largest_counts_allowed_are_accepted(dbos: type[DBOS]) -> None:
    assert echo(5) == 5
    listed = DBOS.list_workflows(limit=2**63 - 1, offset=0)
    assert [w.status for w in listed] == ["SUCCESS"]
    assert DBOS.list_workflows(offset=2**63 - 1) == []
    assert DBOS.list_workflows(end_time=datetime.max.replace(tzinfo=timezone.utc)) != []
