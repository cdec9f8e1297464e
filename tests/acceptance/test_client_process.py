"""A ``DBOSClient`` drives an app running in another real process.

The test process never imports the app's code: it enqueues by workflow
name, reads an event, sends a message, and manages the workflow (cancel,
resume, fork) through the client, on the backend chosen with ``--backend``.
A client may also come first, on a database no app has created yet.
"""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from dbos import DBOSClient, EnqueueOptions
from dbos._sysdb import SystemDatabase, latest_version
from dbos.error import DBOSAwaitedWorkflowCancelledError
from tests.probe import database_exists, migration_version

pytestmark = pytest.mark.acceptance

APP = str(Path(__file__).with_name("client_app.py"))
WAIT_S = 60.0


@contextmanager
def running_app(sys_db_url: str) -> Iterator[subprocess.Popen[str]]:
    """The app of ``client_app.py`` in its own process, launched on ``sys_db_url``."""
    proc = subprocess.Popen([sys.executable, APP, sys_db_url, "0.05"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line == "READY", f"app did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}"
    yield proc
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        assert proc.wait(timeout=WAIT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture
def app_process(sys_db_url: str) -> Iterator[subprocess.Popen[str]]:
    SystemDatabase(sys_db_url).migrate()  # the app and the client agree on a migrated database
    with running_app(sys_db_url) as proc:
        yield proc


@pytest.fixture
def client(sys_db_url: str, app_process: subprocess.Popen[str]) -> Iterator[DBOSClient]:
    client = DBOSClient(system_database_url=sys_db_url)
    yield client
    client.destroy()


def test_client_enqueues_messages_and_reads_results(client: DBOSClient) -> None:
    options: EnqueueOptions = {"workflow_name": "place_order", "queue_name": "orders",
                               "workflow_id": "order-1"}
    handle = client.enqueue(options, "lamp", quantity=3)
    assert client.get_event("order-1", "quote", timeout_seconds=WAIT_S) == 12
    client.send("order-1", "approved", "decision")
    assert handle.get_result(polling_interval_sec=0.05) == "lamp x3 = 12: approved"
    assert list(client.read_stream("order-1", "log")) == ["lamp:approved"]
    status = client.retrieve_workflow("order-1").get_status()
    assert (status.status, status.queue_name, status.name) == ("SUCCESS", "orders", "place_order")
    steps = client.list_workflow_steps("order-1")
    # The recv's wake-up time (DBOS.sleep) is recorded only if it waited a while.
    names = [s["function_name"] for s in steps if s["function_name"] != "DBOS.sleep"]
    assert names == ["price", "DBOS.setEvent", "DBOS.recv", "DBOS.writeStream"]
    assert steps[0]["output"] == 12


def test_client_cancels_resumes_and_forks(sys_db_url: str) -> None:
    client = DBOSClient(system_database_url=sys_db_url)
    options: EnqueueOptions = {"workflow_name": "place_order", "queue_name": "orders",
                               "workflow_id": "order-2"}
    try:
        with running_app(sys_db_url):
            handle = client.enqueue(options, "desk")
            assert client.get_event("order-2", "quote", timeout_seconds=WAIT_S) == 4
            client.cancel_workflow("order-2")
            with pytest.raises(DBOSAwaitedWorkflowCancelledError):
                handle.get_result(polling_interval_sec=0.05)
        # That app has exited, so its execution saw the cancellation: resumed
        # before it looked, it would have waited on beside the new execution.
        with running_app(sys_db_url):
            resumed = client.resume_workflow("order-2")
            client.send("order-2", "late", "decision")
            assert resumed.get_result(polling_interval_sec=0.05) == "desk x1 = 4: late"

            forked = client.fork_workflow("order-2", 2)
            assert client.get_event(forked.workflow_id, "quote", timeout_seconds=WAIT_S) == 4
            client.send(forked.workflow_id, "again", "decision")
            assert forked.get_result(polling_interval_sec=0.05) == "desk x1 = 4: again"
            assert [w.workflow_id for w in client.list_workflows(forked_from="order-2")] == [forked.workflow_id]
            client.delete_workflow(forked.workflow_id)
            assert client.get_workflow_status(forked.workflow_id) is None
    finally:
        client.destroy()


def test_a_client_made_first_is_served_by_an_app_started_later(sys_db_url: str) -> None:
    client = DBOSClient(system_database_url=sys_db_url)  # no database yet: fine
    try:
        assert not database_exists(sys_db_url)
        options: EnqueueOptions = {"workflow_name": "place_order", "queue_name": "orders",
                                   "workflow_id": "first-order"}
        handle = client.enqueue(options, "pen", quantity=2)  # creates and migrates the database
        assert migration_version(sys_db_url) == latest_version()
        with running_app(sys_db_url):
            assert client.get_event("first-order", "quote", timeout_seconds=WAIT_S) == 6
            client.send("first-order", "ok", "decision")
            assert handle.get_result(polling_interval_sec=0.05) == "pen x2 = 6: ok"
    finally:
        client.destroy()
