"""Workflow attributes and delays, on the backend chosen with ``--backend``:
``SetWorkflowAttributes``, ``update_workflow_attributes``, ``delay_seconds`` and
``set_workflow_delay``, from ``DBOS`` and from ``DBOSClient``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, Iterator, List, Optional

import pytest

from dbos import DBOS, DBOSClient, DBOSConfig, Queue, SetEnqueueOptions, SetWorkflowID
from dbos._clock import now_ms
from dbos._engine.attributes import SetWorkflowAttributes
from dbos._queues.queue import current_intake
from dbos.error import DBOSException, DBOSInvalidArgumentError, DBOSNonExistentWorkflowError
from tests.integration.sysdb_sql import count_rows, status_row, wait_for_launch_recovery
from tests.threads import result

WAIT_S = 30.0
QUEUE = "later"
TEAM = {"team": "core", "tags": ["a", "b"], "level": 2}


def wait_polls(count: int = 2) -> None:
    intake = current_intake()
    assert intake is not None
    worker = intake.worker(QUEUE)  # type: ignore[attr-defined]
    assert worker is not None and worker.wait_polls(count, WAIT_S)


def wait_until(epoch_ms: int) -> None:
    """Let the queue's worker poll until ``epoch_ms`` has passed, and twice more."""
    while now_ms() <= epoch_ms:
        wait_polls(1)
    wait_polls(2)


@pytest.fixture
def app(config: DBOSConfig) -> Iterator[Dict[str, Any]]:
    queue = Queue(QUEUE, polling_interval_sec=0.05)

    @DBOS.workflow(name="child")
    def child() -> Optional[str]:
        return DBOS.workflow_id

    @DBOS.workflow(name="parent")
    def parent() -> Optional[str]:
        return child()

    @DBOS.workflow(name="echo")
    def echo(value: Any) -> Any:
        return value

    @DBOS.workflow(name="manager")
    def manager(target: str) -> None:
        DBOS.update_workflow_attributes(target, {"by": "manager"})
        DBOS.set_workflow_delay(target, delay_seconds=0)

    DBOS(config=config)
    DBOS.launch()
    wait_for_launch_recovery()
    yield {"queue": queue, "parent": parent, "echo": echo, "manager": manager}


@pytest.fixture
def client(app: Dict[str, Any], sys_db_url: str) -> Iterator[DBOSClient]:
    client = DBOSClient(system_database_url=sys_db_url)
    yield client
    client.destroy()


def attributes_of(workflow_id: str) -> Any:
    status = DBOS.get_workflow_status(workflow_id)
    assert status is not None
    return status.attributes


# ----------------------------------------------------------------------
# Attributes
# ----------------------------------------------------------------------


def test_attributes_go_to_each_workflow_started_in_the_block_not_to_children(app: Dict[str, Any]) -> None:
    with SetWorkflowAttributes(TEAM):
        with SetWorkflowID("direct"):
            child_id = app["parent"]()
        started = DBOS.start_workflow(app["echo"], 1)
        enqueued = app["queue"].enqueue(app["echo"], 2)
    outside = DBOS.start_workflow(app["echo"], 3)
    assert result(started) == 1 and result(enqueued) == 2 and result(outside) == 3
    for workflow_id in ("direct", started.workflow_id, enqueued.workflow_id):
        assert attributes_of(workflow_id) == TEAM
    assert attributes_of(child_id) is None, "a child does not inherit its parent's attributes"
    assert attributes_of(outside.workflow_id) is None
    with SetWorkflowAttributes(None):
        assert result(DBOS.start_workflow(app["echo"], 4)) == 4


def test_update_replaces_and_none_clears(app: Dict[str, Any]) -> None:
    with SetWorkflowAttributes(TEAM):
        handle = DBOS.start_workflow(app["echo"], 1)
    result(handle)
    DBOS.update_workflow_attributes(handle.workflow_id, {"only": True})
    assert attributes_of(handle.workflow_id) == {"only": True}
    asyncio.run(DBOS.update_workflow_attributes_async(handle.workflow_id, None))
    assert attributes_of(handle.workflow_id) is None
    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.update_workflow_attributes("nobody", {"a": 1})


@pytest.mark.parametrize("bad", [{"when": object()}, ["not", "a", "dict"], {"nan": float("nan")}, "text"])
def test_attributes_that_are_not_a_json_dict_are_refused(app: Dict[str, Any], client: DBOSClient,
                                                         bad: Any) -> None:
    with pytest.raises(DBOSInvalidArgumentError, match="Invalid attributes"):
        SetWorkflowAttributes(bad)
    handle = DBOS.start_workflow(app["echo"], 1)
    result(handle)
    DBOS.update_workflow_attributes(handle.workflow_id, {"kept": 1})
    with pytest.raises(DBOSInvalidArgumentError, match="Invalid attributes"):
        DBOS.update_workflow_attributes(handle.workflow_id, bad)
    with pytest.raises(DBOSInvalidArgumentError, match="Invalid attributes"):
        client.update_workflow_attributes(handle.workflow_id, bad)
    with pytest.raises(DBOSInvalidArgumentError, match='EnqueueOptions\\["attributes"\\]'):
        client.enqueue({"workflow_name": "echo", "queue_name": QUEUE, "attributes": bad}, 2)
    assert attributes_of(handle.workflow_id) == {"kept": 1}
    assert count_rows("status") == 1


def test_attributes_from_a_client(app: Dict[str, Any], client: DBOSClient, backend: str) -> None:
    handle = client.enqueue({"workflow_name": "echo", "queue_name": QUEUE, "attributes": TEAM}, 1)
    assert handle.get_result(polling_interval_sec=0.05) == 1
    assert attributes_of(handle.workflow_id) == TEAM
    client.update_workflow_attributes(handle.workflow_id, {"by": "client"})
    status = client.get_workflow_status(handle.workflow_id)
    assert status is not None and status.attributes == {"by": "client"}
    asyncio.run(client.update_workflow_attributes_async(handle.workflow_id, {"by": "async"}))
    assert attributes_of(handle.workflow_id) == {"by": "async"}
    with pytest.raises(DBOSNonExistentWorkflowError):
        client.update_workflow_attributes("nobody", None)
    if backend == "postgres":  # matching by containment needs JSONB
        found = client.list_workflows(attributes={"by": "async"})
        assert [s.workflow_id for s in found] == [handle.workflow_id]
        assert DBOS.list_workflows(attributes={"by": "other"}) == []


# ----------------------------------------------------------------------
# Delays
# ----------------------------------------------------------------------


def test_delay_seconds_keeps_a_workflow_delayed_until_due(app: Dict[str, Any], client: DBOSClient) -> None:
    with SetEnqueueOptions(delay_seconds=0.5):
        handle = app["queue"].enqueue(app["echo"], "engine")
    by_client = client.enqueue({"workflow_name": "echo", "queue_name": QUEUE, "delay_seconds": 0.5}, "client")
    for workflow_id in (handle.workflow_id, by_client.workflow_id):
        row = status_row(workflow_id)
        assert row["status"] == "DELAYED" and row["delay_until_epoch_ms"] >= row["created_at"] + 500
    assert result(handle) == "engine"
    assert by_client.get_result(polling_interval_sec=0.05) == "client"
    for workflow_id in (handle.workflow_id, by_client.workflow_id):
        row = status_row(workflow_id)
        assert row["started_at_epoch_ms"] >= row["delay_until_epoch_ms"]


def test_set_workflow_delay_makes_a_delayed_workflow_run_sooner(app: Dict[str, Any]) -> None:
    with SetEnqueueOptions(delay_seconds=3600):
        handle = app["queue"].enqueue(app["echo"], "soon")
    wait_polls()
    assert status_row(handle.workflow_id)["status"] == "DELAYED"
    DBOS.set_workflow_delay(handle.workflow_id, delay_seconds=0)
    assert result(handle) == "soon"


def test_set_workflow_delay_makes_a_delayed_workflow_run_later(app: Dict[str, Any], client: DBOSClient) -> None:
    with SetEnqueueOptions(delay_seconds=1):
        handle = app["queue"].enqueue(app["echo"], "late")
    first_due = status_row(handle.workflow_id)["delay_until_epoch_ms"]
    later = now_ms() + 3_600_000
    DBOS.set_workflow_delay(handle.workflow_id, delay_until_epoch_ms=later)
    wait_until(first_due)
    row = status_row(handle.workflow_id)
    assert (row["status"], row["delay_until_epoch_ms"]) == ("DELAYED", later)
    client.set_workflow_delay(handle.workflow_id, delay_seconds=3600)  # the client too
    assert status_row(handle.workflow_id)["delay_until_epoch_ms"] > later - 1000
    asyncio.run(client.set_workflow_delay_async(handle.workflow_id, delay_until_epoch_ms=0))
    assert result(handle) == "late"


@pytest.mark.parametrize("arguments, message", [
    ({}, "exactly one"),
    ({"delay_seconds": 1, "delay_until_epoch_ms": 1}, "exactly one"),
    ({"delay_seconds": -1}, "delay_seconds -1"),
    ({"delay_until_epoch_ms": -5}, "delay_until_epoch_ms -5"),
    ({"delay_seconds": "soon"}, "delay_seconds 'soon'"),
])
def test_bad_delays_are_refused(app: Dict[str, Any], client: DBOSClient, arguments: Dict[str, Any],
                                message: str) -> None:
    with SetEnqueueOptions(delay_seconds=3600):
        handle = app["queue"].enqueue(app["echo"], 1)
    due = status_row(handle.workflow_id)["delay_until_epoch_ms"]
    with pytest.raises(DBOSInvalidArgumentError, match=message):
        DBOS.set_workflow_delay(handle.workflow_id, **arguments)
    with pytest.raises(DBOSInvalidArgumentError, match=message):
        client.set_workflow_delay(handle.workflow_id, **arguments)
    assert status_row(handle.workflow_id)["delay_until_epoch_ms"] == due


def test_only_a_delayed_workflow_gets_a_new_delay(app: Dict[str, Any], client: DBOSClient) -> None:
    done = DBOS.start_workflow(app["echo"], 1)
    result(done)
    with pytest.raises(DBOSException, match="is SUCCESS, not DELAYED"):
        DBOS.set_workflow_delay(done.workflow_id, delay_seconds=1)
    with pytest.raises(DBOSException, match="not DELAYED"):
        client.set_workflow_delay(done.workflow_id, delay_seconds=1)
    assert status_row(done.workflow_id)["delay_until_epoch_ms"] is None
    with pytest.raises(DBOSNonExistentWorkflowError):
        asyncio.run(DBOS.set_workflow_delay_async("nobody", delay_seconds=1))


def test_inside_a_workflow_each_change_is_a_step(app: Dict[str, Any]) -> None:
    with SetEnqueueOptions(delay_seconds=3600):
        target = app["queue"].enqueue(app["echo"], "managed")
    with SetWorkflowID("manager"):
        app["manager"](target.workflow_id)
    names: List[str] = [s["function_name"] for s in DBOS.list_workflow_steps("manager")]
    assert names == ["DBOS.updateWorkflowAttributes", "DBOS.setWorkflowDelay"]
    assert result(target) == "managed"
    assert attributes_of(target.workflow_id) == {"by": "manager"}
