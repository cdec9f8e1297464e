"""``DBOSClient`` against an app launched in this process, on the chosen backend.

The app's workers run what the client enqueues; the client itself only
uses the system database (the acceptance tests use a separate process).
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, Iterator

import pytest

from dbos import DBOS, DBOSClient, DBOSConfig, EnqueueOptions, Queue, SetWorkflowID
from dbos.error import (
    DBOSConflictingWorkflowError,
    DBOSException,
    DBOSMigrationRequiredError,
    DBOSNonExistentWorkflowError,
    DBOSQueueDeduplicatedError,
    DBOSSystemDatabaseError,
)
from dbos._queues.queue import current_intake
from tests.integration.sysdb_sql import count_rows, engine, status_row

WAIT_S = 30.0


@pytest.fixture
def app(config: DBOSConfig) -> Iterator[Dict[str, Any]]:
    Queue("work")

    @DBOS.workflow(name="echo")
    def echo(*args: Any, **kwargs: Any) -> Any:
        return {"args": args, "kwargs": kwargs, "user": DBOS.authenticated_user}

    @DBOS.workflow(name="inbox")
    def inbox() -> Any:
        DBOS.set_event("ready", True)
        return DBOS.recv("mail", timeout_seconds=WAIT_S)

    @DBOS.workflow(name="streamer")
    def streamer() -> Any:
        DBOS.write_stream("log", "a")
        DBOS.close_stream("log")
        return DBOS.recv("done", timeout_seconds=WAIT_S)  # still running while the client reads

    DBOS(config=config)
    DBOS.launch()
    # The queue's first poll is over before a test enqueues: its work is then
    # claimed at the next poll, a second later, as the tests' timing assumes
    # (test_async_methods counts the recv's wake-up time, recorded only once
    # the recv has waited a while).
    intake = current_intake()
    assert intake is not None
    worker = intake.worker("work")  # type: ignore[attr-defined]
    assert worker is not None and (worker.polls > 0 or worker.wait_polls(1, WAIT_S))
    yield {"echo": echo, "inbox": inbox, "streamer": streamer}


@pytest.fixture
def client(app: Dict[str, Any], sys_db_url: str) -> Iterator[DBOSClient]:
    client = DBOSClient(system_database_url=sys_db_url)
    yield client
    client.destroy()


def test_enqueue_by_name_with_options(client: DBOSClient) -> None:
    options: EnqueueOptions = {
        "workflow_name": "echo", "queue_name": "work", "workflow_id": "e1",
        "priority": 5, "authenticated_user": "ann", "authenticated_roles": ["admin"],
        "app_version": DBOS.application_version, "workflow_timeout": 60,
    }
    handle = client.enqueue(options, 1, "two", three=3)
    result = handle.get_result(polling_interval_sec=0.05)
    assert result == {"args": (1, "two"), "kwargs": {"three": 3}, "user": "ann"}
    row = status_row("e1")
    assert (row["queue_name"], row["priority"], row["workflow_timeout_ms"]) == ("work", 5, 60_000)
    assert row["application_version"] == DBOS.application_version
    again = client.enqueue(options, 1, "two", three=3)  # the same ID: the same workflow
    assert again.get_result() == result and count_rows("status") == 1


def test_enqueue_delay_and_deduplication(client: DBOSClient) -> None:
    current_intake().stop()  # leave rows as the client wrote them
    delayed = client.enqueue({"workflow_name": "echo", "queue_name": "work", "delay_seconds": 3600})
    assert status_row(delayed.workflow_id)["status"] == "DELAYED"
    first: EnqueueOptions = {"workflow_name": "echo", "queue_name": "work", "deduplication_id": "d"}
    client.enqueue(first)
    with pytest.raises(DBOSQueueDeduplicatedError):
        client.enqueue(first)
    assert count_rows("status") == 2


@pytest.mark.parametrize("options, message", [
    ({"queue_name": "work"}, "workflow_name as a non-empty string"),
    ({"workflow_name": "echo", "queue_name": ""}, "queue_name as a non-empty string"),
    ({"workflow_name": "echo", "queue_name": "work", "priority": 0}, "priority must be an integer"),
    ({"workflow_name": "echo", "queue_name": "work", "workflow_id": " "}, "workflow_id must be"),
    ({"workflow_name": "echo", "queue_name": "work", "delay_seconds": -1}, "delay_seconds must be"),
])
def test_enqueue_rejects_bad_options(client: DBOSClient, options: Any, message: str) -> None:
    with pytest.raises(DBOSException, match=message):
        client.enqueue(options)
    assert count_rows("status") == 0


def test_enqueue_refuses_an_id_taken_by_another_workflow(client: DBOSClient, app: Dict[str, Any]) -> None:
    with SetWorkflowID("taken"):
        app["echo"]()
    with pytest.raises(DBOSConflictingWorkflowError):
        client.enqueue({"workflow_name": "inbox", "queue_name": "work", "workflow_id": "taken"})


def test_send_get_event_and_retrieve(client: DBOSClient, app: Dict[str, Any]) -> None:
    with SetWorkflowID("box"):
        DBOS.start_workflow(app["inbox"])
    assert client.get_event("box", "ready", timeout_seconds=WAIT_S) is True
    assert client.get_event("box", "never-set", timeout_seconds=0.05) is None
    client.send("box", {"hello": 1}, "mail", "key-1")
    client.send("box", {"hello": 2}, "mail", "key-1")  # same idempotency key: dropped
    assert client.retrieve_workflow("box").get_result(polling_interval_sec=0.05) == {"hello": 1}
    with pytest.raises(DBOSNonExistentWorkflowError):
        client.retrieve_workflow("no-such")
    with pytest.raises(DBOSNonExistentWorkflowError):
        client.send("no-such", 1)


def test_read_stream_ends_where_the_stream_was_closed(client: DBOSClient, app: Dict[str, Any]) -> None:
    with SetWorkflowID("writer"):
        handle = DBOS.start_workflow(app["streamer"])
    assert list(client.read_stream("writer", "log")) == ["a"]
    assert handle.get_status().status == "PENDING"
    with pytest.raises(DBOSNonExistentWorkflowError):
        list(client.read_stream("no-such", "log"))
    client.send("writer", "stop", "done")
    assert handle.get_result() == "stop"


def test_listing_is_scoped_to_the_clients_application(app: Dict[str, Any], sys_db_url: str) -> None:
    with SetWorkflowID("mine"):
        app["echo"]()
    other = DBOSClient(system_database_url=sys_db_url, application_name="other-app")
    try:
        other.enqueue({"workflow_name": "echo", "queue_name": "work", "workflow_id": "theirs"})
        assert [w.workflow_id for w in other.list_workflows()] == ["theirs"]
        assert [w.workflow_id for w in DBOS.list_workflows()] == ["mine"]
        assert [w.workflow_id for w in other.list_workflows(workflow_ids=["mine"])] == ["mine"]
    finally:
        other.destroy()


def test_async_methods(client: DBOSClient, app: Dict[str, Any]) -> None:
    async def scenario() -> Any:
        handle = await client.enqueue_async({"workflow_name": "inbox", "queue_name": "work",
                                             "workflow_id": "abox"})
        assert await client.get_event_async("abox", "ready", WAIT_S) is True
        await client.send_async("abox", "hi", "mail")
        result = await handle.get_result(polling_interval_sec=0.05)
        listed = await client.list_workflows_async(name="inbox")
        steps = await client.list_workflow_steps_async("abox")
        status = await (await client.retrieve_workflow_async("abox")).get_status()
        await client.delete_workflow_async("abox")
        return result, [w.workflow_id for w in listed], len(steps), status.status

    assert asyncio.run(scenario()) == ("hi", ["abox"], 3, "SUCCESS")
    assert client.get_workflow_status("abox") is None


def test_construction_errors(sys_db_url: str, tmp_path: Any, backend: str) -> None:
    with pytest.raises(DBOSException, match="needs system_database_url"):
        DBOSClient()
    missing = f"sqlite:///{tmp_path}/missing.sqlite" if backend == "sqlite" else sys_db_url
    with pytest.raises(DBOSMigrationRequiredError, match="dbos migrate"):
        DBOSClient(system_database_url=missing)
    lazy = DBOSClient(system_database_url=missing, lazy=True)  # no connection until used
    lazy.destroy()
    if backend == "postgres":
        with pytest.raises(DBOSSystemDatabaseError, match="Cannot use the system database"):
            DBOSClient(system_database_url="postgresql://postgres:x@127.0.0.1:1/nowhere")
