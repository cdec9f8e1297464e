"""The admin HTTP server, on the backend chosen with ``--backend``.

Each test launches DBOS with ``run_admin_server`` on a free port and talks
to it over real HTTP (``urllib``, or a raw socket for requests urllib will
not send). Every answer is checked to be JSON with no stack trace in it.
Workflows hand off through events, messages and handles; the only waits
on the clock are for it to pass a millisecond, so rows created later have
a later ``created_at``.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, cast

import pytest

from dbos import DBOS, DBOSConfig, DBOSContextSetAuth, Queue, SetWorkflowID
from dbos._engine.engine import Engine, peek_engine
from dbos._ops import admin_server
from dbos.error import DBOSAwaitedWorkflowCancelledError, DBOSInitializationError
from tests.integration.sysdb_sql import set_pending, sys_sql, wait_for_launch_recovery
from tests.threads import result

WAIT_S = 30.0  # an upper bound reached only when a test is already failing
NEVER_S = 120.0  # longer than WAIT_S: only a message or a cancellation ends such a wait in time


# ----------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------


def engine() -> Engine:
    found = peek_engine()
    assert found is not None, "DBOS is not launched"
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.settimeout(WAIT_S)
        return probe.connect_ex((host, port)) == 0


def name_of(func: Callable[..., Any]) -> str:
    return str(getattr(func, "dbos_function_name"))


def now_ms() -> int:
    return int(time.time() * 1000)


def next_millisecond() -> None:
    """Let the clock pass a millisecond, so the next row's created_at is later."""
    start = now_ms()
    while now_ms() == start:
        time.sleep(0.0005)


@dataclass
class Answer:
    status: int
    headers: Dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def error(self) -> str:
        body = self.json
        assert isinstance(body, dict) and isinstance(body.get("error"), str), self.text
        return str(body["error"])


TEXT = "text/plain; charset=utf-8"  # health and deactivation answer one word, as in DBOS Transact
METRICS_TEXT = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus's text format


def checked(answer: Answer, head: bool = False) -> Answer:
    """Every answer is JSON (204 and HEAD: empty), or one plain word, and never shows a stack trace."""
    assert "Traceback" not in answer.text and 'File "' not in answer.text, answer.text
    kind = answer.headers.get("Content-Type")
    if head or answer.status == 204:
        assert answer.text == "" and kind in (TEXT, "application/json"), (kind, answer.text)
    elif kind == TEXT:
        assert answer.text in ("healthy", "deactivated"), answer.text
    elif kind == METRICS_TEXT:
        assert answer.text.startswith("# HELP "), answer.text
    else:
        assert kind == "application/json", answer.headers
        json.loads(answer.text)
    return answer


class Admin:
    """A client of the admin server on ``port``, ignoring any HTTP proxy."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, body: Any = None, raw: Optional[bytes] = None,
             headers: Optional[Dict[str, str]] = None) -> Answer:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with self._opener.open(request, timeout=WAIT_S) as response:
                answer = Answer(response.status, dict(response.headers), response.read().decode())
        except urllib.error.HTTPError as exc:
            answer = Answer(exc.code, dict(exc.headers), exc.read().decode())
        return checked(answer, head=method == "HEAD")

    def get(self, path: str) -> Answer:
        return self.call("GET", path)

    def post(self, path: str, body: Any = None) -> Answer:
        return self.call("POST", path, body)

    def raw(self, request: bytes) -> Answer:
        """Send bytes as they are (HTTP/1.0: the server closes after answering)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=WAIT_S) as conn:
            conn.sendall(request)
            received = b""
            while chunk := conn.recv(65536):
                received += chunk
        head, _, body = received.decode().partition("\r\n\r\n")
        lines = head.split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        return checked(Answer(int(lines[0].split()[1]), headers, body), head=request.startswith(b"HEAD "))

    def workflow(self, workflow_id: str) -> Dict[str, Any]:
        answer = self.get(f"/workflows/{workflow_id}")
        assert answer.status == 200, answer.text
        return cast(Dict[str, Any], answer.json)

    def ids(self, path: str, body: Any) -> List[str]:
        answer = self.post(path, body)
        assert answer.status == 200, answer.text
        return [w["WorkflowUUID"] for w in answer.json]


def iso_time(ms: int) -> str:
    """Local ISO time half a millisecond after epoch ``ms`` (naive: local, as filters read it)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ms // 1000)) + f".{ms % 1000:03d}500"


def thread_names() -> List[str]:
    return [t.name for t in threading.enumerate() if t.is_alive()]


@pytest.fixture
def admin_port() -> int:
    return free_port()


@pytest.fixture
def launch(config: DBOSConfig, admin_port: int) -> Iterator[Callable[..., Admin]]:
    """Launch DBOS with the admin server (after the test declared its
    workflows); at teardown, workflows still waiting are cancelled and end
    before DBOS is destroyed."""

    def go(**settings: Any) -> Admin:
        merged = {**config, "run_admin_server": True, "admin_port": admin_port, **settings}
        DBOS(config=cast(DBOSConfig, merged))
        DBOS.launch()
        wait_for_launch_recovery()  # tests rewrite rows; the launch's pass must be over
        return Admin(admin_port)

    yield go
    running = peek_engine()
    if running is not None and running.active_workflows():
        DBOS.cancel_workflows(running.active_workflows())
    DBOS.destroy(destroy_registry=True, workflow_completion_timeout_sec=int(WAIT_S))


# ----------------------------------------------------------------------
# Starting and stopping
# ----------------------------------------------------------------------


def test_admin_server_is_off_by_default(config: DBOSConfig, admin_port: int) -> None:
    DBOS(config=cast(DBOSConfig, {**config, "admin_port": admin_port}))
    DBOS.launch()
    assert not listening(admin_port)
    assert "dbos-admin-server" not in thread_names()


def test_admin_server_listens_on_loopback_only_and_reports_health(
    launch: Callable[..., Admin], admin_port: int
) -> None:
    admin = launch()
    assert "dbos-admin-server" in thread_names()
    answer = admin.get("/dbos-healthz")
    assert (answer.status, answer.headers["Content-Type"], answer.text) == (200, TEXT, "healthy")
    if sys.platform.startswith("linux"):
        # All of 127/8 reaches this host on Linux: a server bound to
        # 0.0.0.0 would answer on 127.0.0.2 too.
        assert not listening(admin_port, "127.0.0.2")


def test_destroy_stops_the_server_and_frees_the_port(
    launch: Callable[..., Admin], config: DBOSConfig, admin_port: int
) -> None:
    admin = launch()
    assert admin.get("/dbos-healthz").status == 200
    DBOS.destroy(destroy_registry=True)
    assert not listening(admin_port)
    assert "dbos-admin-server" not in thread_names()
    # The port can be taken again at once: by a new DBOS with its admin server.
    admin = launch()
    assert admin.get("/dbos-healthz").text == "healthy"


def test_a_port_in_use_fails_launch_naming_the_port_and_settings(
    config: DBOSConfig, admin_port: int
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", admin_port))
        squatter.listen()
        DBOS(config=cast(DBOSConfig, {**config, "run_admin_server": True, "admin_port": admin_port}))
        with pytest.raises(DBOSInitializationError) as caught:
            DBOS.launch()
    message = str(caught.value)
    assert f"127.0.0.1:{admin_port}" in message
    assert "admin_port" in message and "run_admin_server" in message
    assert peek_engine() is None  # nothing started: no engine, no queue workers
    assert not [t.name for t in threading.enumerate() if t.name.startswith(("dbos-queue", "dbos-recovery"))]
    DBOS.destroy(destroy_registry=True)
    assert not listening(admin_port)


# ----------------------------------------------------------------------
# Deactivation, queue metadata, recovery
# ----------------------------------------------------------------------


def test_deactivate_stops_schedulers_while_queued_and_running_workflows_finish(
    launch: Callable[..., Admin]
) -> None:
    """As in DBOS Transact: no new workflow starts of its own accord, but the
    queues keep running, so a workflow in flight that enqueues a child and
    waits for it still finishes here."""
    queue = Queue("admin-work")

    @DBOS.workflow()
    def job(x: int) -> int:
        return x + 1

    @DBOS.workflow()
    def in_flight() -> int:
        DBOS.recv("go", timeout_seconds=NEVER_S)
        return int(queue.enqueue(job, 10).get_result())

    @DBOS.scheduled("0 0 1 1 *")  # never due during the test: only its thread matters
    @DBOS.workflow()
    def yearly(scheduled: Any, actual: Any) -> None:
        pass

    admin = launch()
    with SetWorkflowID("in-flight"):
        handle = DBOS.start_workflow(in_flight)
    assert {"dbos-scheduler", "dbos-schedules"} <= set(thread_names())

    answer = admin.get("/deactivate")
    assert (answer.status, answer.text) == (200, "deactivated")
    assert not {"dbos-scheduler", "dbos-schedules"} & set(thread_names())
    DBOS.send("in-flight", "now", "go")
    assert result(handle) == 11  # its child ran on the queue, here
    assert result(queue.enqueue(job, 2)) == 3  # queued work goes on
    assert not engine().intake_stopped
    assert admin.get("/deactivate").text == "deactivated"  # asking again is harmless
    assert admin.get("/dbos-healthz").status == 200  # the server itself keeps answering


def test_queue_metadata_lists_declared_and_registered_queues(launch: Callable[..., Admin]) -> None:
    Queue("limited", concurrency=4, limiter={"limit": 10, "period": 1.5}, worker_concurrency=2)
    Queue("parted", partition_queue=True)
    Queue("plain")
    admin = launch()
    DBOS.register_queue("registered", concurrency=3, priority_enabled=True)

    answer = admin.get("/dbos-workflow-queues-metadata")
    assert answer.status == 200
    # DBOS Transact's fields and order: declared queues, the internal one, then
    # those only in the database; what is not set is left out.
    assert answer.json == [
        {"name": "limited", "concurrency": 4, "workerConcurrency": 2, "rateLimit": {"limit": 10, "period": 1.5}},
        {"name": "parted"},
        {"name": "plain"},
        {"name": "_dbos_internal_queue"},
        {"name": "registered", "concurrency": 3},
    ]


def test_recovery_resumes_the_pending_workflows_of_the_given_executors(
    launch: Callable[..., Admin]
) -> None:
    calls = {"body": 0, "step": 0}
    queue = Queue("recovered-queue")

    @DBOS.step()
    def once() -> int:
        calls["step"] += 1
        return 7

    @DBOS.workflow()
    def work(x: int) -> int:
        calls["body"] += 1
        return once() + x

    admin = launch()
    direct = DBOS.start_workflow(work, 1)
    queued = queue.enqueue(work, 2)
    assert (result(direct), result(queued)) == (8, 9)
    # Both look as if the process "gone-vm" died running them.
    for handle in (direct, queued):
        set_pending(handle.workflow_id)
        sys_sql("UPDATE {status} SET executor_id = 'gone-vm' WHERE workflow_uuid = ?", (handle.workflow_id,))

    dequeued = int(admin.workflow(queued.workflow_id)["DequeuedAt"])
    next_millisecond()

    answer = admin.post("/dbos-workflow-recovery", ["gone-vm"])
    assert answer.status == 200
    assert sorted(answer.json) == sorted([direct.workflow_id, queued.workflow_id])
    assert [result(DBOS.retrieve_workflow(h.workflow_id)) for h in (direct, queued)] == [8, 9]
    assert calls == {"body": 4, "step": 2}  # bodies ran again, steps replayed
    assert admin.workflow(direct.workflow_id)["ExecutorID"] == DBOS.executor_id
    # The queued one went back to its queue and was claimed again, not run directly.
    assert int(admin.workflow(queued.workflow_id)["DequeuedAt"]) > dequeued
    assert admin.post("/dbos-workflow-recovery", ["gone-vm", "never-seen"]).json == []


def test_recovery_of_this_executor_skips_the_workflows_running_here(
    launch: Callable[..., Admin]
) -> None:
    runs = {"waiter": 0}
    started = threading.Event()

    @DBOS.workflow()
    def waiter() -> Any:
        runs["waiter"] += 1
        started.set()
        return DBOS.recv("go", timeout_seconds=NEVER_S)

    @DBOS.workflow()
    def quick(x: int) -> int:
        return x

    admin = launch()
    with SetWorkflowID("running-here"):
        DBOS.start_workflow(waiter)
    assert started.wait(WAIT_S), "the waiting workflow never started"
    with SetWorkflowID("crashed-here"):
        quick(3)
    set_pending("crashed-here")  # PENDING, but nothing here runs it

    answer = admin.post("/dbos-workflow-recovery", [DBOS.executor_id])
    assert (answer.status, answer.json) == (200, ["crashed-here"])
    assert result(DBOS.retrieve_workflow("crashed-here")) == 3
    DBOS.send("running-here", "ok", "go")
    assert result(DBOS.retrieve_workflow("running-here")) == "ok"
    assert runs["waiter"] == 1


# ----------------------------------------------------------------------
# Reading workflows
# ----------------------------------------------------------------------


def test_get_workflow_and_its_steps(launch: Callable[..., Admin]) -> None:
    @DBOS.step()
    def fetch() -> Dict[str, int]:
        return {"x": 1}

    @DBOS.step()
    def explode() -> None:
        raise ValueError("boom")

    @DBOS.workflow()
    def reader(label: str) -> str:
        fetch()
        try:
            explode()
        except ValueError:
            pass
        return f"done {label}"

    admin = launch()
    with SetWorkflowID("read-1"), DBOSContextSetAuth("alice", ["admin", "clerk"]):
        assert reader("a") == "done a"

    record = admin.workflow("read-1")
    assert record["WorkflowUUID"] == "read-1"
    assert record["Status"] == "SUCCESS"
    assert record["WorkflowName"] == name_of(reader)
    assert record["Output"] == "done a"
    assert record["Error"] is None
    assert "'a'" in record["Input"]
    assert record["AuthenticatedUser"] == "alice"
    assert record["AuthenticatedRoles"] == "['admin', 'clerk']"  # str() of the list, as DBOS Transact
    assert record["ExecutorID"] == DBOS.executor_id
    assert record["ApplicationVersion"] == DBOS.application_version
    assert record["ApplicationName"] == "test-app"
    assert int(record["CreatedAt"]) <= int(record["UpdatedAt"])
    assert record["WasForkedFrom"] is False and record["ForkedFrom"] is None
    assert set(record) >= {"QueueName", "WorkflowTimeoutMS", "DeduplicationID", "Priority",
                           "QueuePartitionKey", "ParentWorkflowID", "DequeuedAt",
                           "DelayUntilEpochMS", "CompletedAt", "Attributes", "ScheduleName",
                           "WorkflowClassName", "WorkflowConfigName", "AssumedRole",
                           "WorkflowDeadlineEpochMS"}

    answer = admin.get("/workflows/read-1/steps")
    assert answer.status == 200
    steps = answer.json
    assert [(s["function_id"], s["function_name"]) for s in steps] == [
        (1, name_of(fetch)), (2, name_of(explode))]
    assert steps[0]["output"] == "{'x': 1}" and steps[0]["error"] is None
    assert steps[1]["output"] is None and "boom" in steps[1]["error"]
    assert all(s["child_workflow_id"] is None for s in steps)
    assert all(isinstance(s["started_at_epoch_ms"], str) for s in steps)  # times as strings, too
    assert all(int(s["completed_at_epoch_ms"]) >= int(s["started_at_epoch_ms"]) for s in steps)
    assert list(steps[0]) == ["function_id", "function_name", "output", "error", "child_workflow_id",
                              "started_at_epoch_ms", "completed_at_epoch_ms"]

    missing = admin.get("/workflows/no-such-id")
    assert missing.status == 404 and "no-such-id" in missing.error
    assert (admin.get("/workflows/no-such-id/steps").json) == []  # no steps, as in DBOS Transact


def test_list_workflows_applies_each_filter(launch: Callable[..., Admin]) -> None:
    @DBOS.workflow()
    def alpha(x: int) -> int:
        return x

    @DBOS.workflow()
    def failing() -> None:
        raise RuntimeError("nope")

    @DBOS.workflow()
    def parent() -> str:
        with SetWorkflowID("child-1"):
            return str(alpha(5))

    admin = launch()
    for i in (1, 2, 3):
        with SetWorkflowID(f"alpha-{i}"):
            alpha(i)
        next_millisecond()
    with SetWorkflowID("bad-1"), pytest.raises(RuntimeError):
        failing()
    with SetWorkflowID("parent-1"), DBOSContextSetAuth("bob", None):
        parent()
    created = {w: int(admin.workflow(w)["CreatedAt"]) for w in ("alpha-1", "alpha-3")}
    everything = {"alpha-1", "alpha-2", "alpha-3", "bad-1", "parent-1", "child-1"}

    assert set(admin.ids("/workflows", {})) == everything
    assert set(admin.ids("/workflows", None)) == everything  # no body at all
    assert sorted(admin.ids("/workflows", {"workflow_name": name_of(alpha)})) == [
        "alpha-1", "alpha-2", "alpha-3", "child-1"]
    assert sorted(admin.ids("/workflows", {"workflow_uuids": ["alpha-2", "bad-1"]})) == ["alpha-2", "bad-1"]
    assert admin.ids("/workflows", {"status": "ERROR"}) == ["bad-1"]
    assert sorted(admin.ids("/workflows", {"workflow_id_prefix": "alpha-"})) == ["alpha-1", "alpha-2", "alpha-3"]
    assert admin.ids("/workflows", {"workflow_id_prefix": "alpha-", "limit": 2, "sort_desc": True}) == [
        "alpha-3", "alpha-2"]
    assert admin.ids("/workflows", {"workflow_id_prefix": "alpha-", "offset": 1, "limit": 1}) == ["alpha-2"]
    assert sorted(admin.ids("/workflows", {"authenticated_user": "bob"})) == ["child-1", "parent-1"]
    assert admin.ids("/workflows", {"parent_workflow_id": "parent-1"}) == ["child-1"]
    assert set(admin.ids("/workflows", {"application_version": DBOS.application_version})) == everything
    assert admin.ids("/workflows", {"application_version": "other-version"}) == []
    # Half a millisecond past each stamp, so float rounding cannot move it across a row.
    since, until = iso_time(created["alpha-3"] - 1), iso_time(created["alpha-1"])
    assert "alpha-1" not in admin.ids("/workflows", {"start_time": since})
    assert "alpha-3" in admin.ids("/workflows", {"start_time": since})
    assert admin.ids("/workflows", {"end_time": until, "workflow_id_prefix": "alpha-"}) == ["alpha-1"]

    lean = admin.post("/workflows", {"workflow_uuids": ["alpha-2"]}).json[0]
    assert (lean["Input"], lean["Output"]) == (None, None)  # inputs and outputs load only when asked
    full = admin.post("/workflows", {"workflow_uuids": ["alpha-2"], "load_input": True, "load_output": True})
    assert full.json[0]["Output"] == "2" and "2" in full.json[0]["Input"]


def test_list_queued_workflows_applies_its_filters(launch: Callable[..., Admin]) -> None:
    queue = Queue("held", worker_concurrency=1)
    started = threading.Event()
    release = threading.Event()

    @DBOS.workflow()
    def blocker(x: int) -> int:
        started.set()
        assert release.wait(WAIT_S), "the test never released the queue"
        return x

    admin = launch()
    try:
        with SetWorkflowID("held-1"):
            first = queue.enqueue(blocker, 1)
        assert started.wait(WAIT_S), "the first queued workflow never started"
        with SetWorkflowID("held-2"):
            second = queue.enqueue(blocker, 2)

        assert sorted(admin.ids("/queues", {"queue_name": "held"})) == ["held-1", "held-2"]
        assert sorted(admin.ids("/queues", None)) == ["held-1", "held-2"]
        assert admin.ids("/queues", {"status": "ENQUEUED"}) == ["held-2"]
        assert admin.ids("/queues", {"status": ["PENDING"], "queue_name": "held"}) == ["held-1"]
        assert admin.ids("/queues", {"queue_name": "elsewhere"}) == []
        assert admin.ids("/queues", {"workflow_name": name_of(blocker), "sort_desc": True, "limit": 1}) == [
            "held-2"]
        assert admin.post("/queues", {"queue_name": "held"}).json[0]["Input"] is None
        loaded = admin.post("/queues", {"queue_name": "held", "load_input": True}).json
        assert all(w["Input"] is not None for w in loaded)
        assert all(w["QueueName"] == "held" for w in loaded)
        # A field /queues does not know is ignored, as in DBOS Transact.
        assert sorted(admin.ids("/queues", {"workflow_uuids": ["held-1"]})) == ["held-1", "held-2"]
    finally:
        release.set()
    assert (result(first), result(second)) == (1, 2)
    assert admin.ids("/queues", {"queue_name": "held"}) == []  # finished ones are no longer queued


# ----------------------------------------------------------------------
# Managing workflows
# ----------------------------------------------------------------------


def test_cancel_then_resume_a_workflow_waiting_for_a_message(launch: Callable[..., Admin]) -> None:
    started = threading.Semaphore(0)
    ended = threading.Semaphore(0)

    @DBOS.workflow()
    def waiter() -> Any:
        started.release()
        try:
            return DBOS.recv("go", timeout_seconds=NEVER_S)
        finally:
            ended.release()

    admin = launch()
    with SetWorkflowID("waiter-1"):
        DBOS.start_workflow(waiter)
    handle = DBOS.retrieve_workflow("waiter-1")  # polls the database, across both executions
    assert started.acquire(timeout=WAIT_S), "the workflow never started"

    assert admin.post("/workflows/waiter-1/cancel").status == 204
    assert ended.acquire(timeout=WAIT_S), "cancellation did not end the waiting execution"
    assert admin.workflow("waiter-1")["Status"] == "CANCELLED"
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        result(handle)

    assert admin.post("/workflows/waiter-1/resume").status == 204
    assert started.acquire(timeout=WAIT_S), "the resumed workflow never started again"
    DBOS.send("waiter-1", "hello", "go")
    assert result(handle) == "hello"
    assert admin.workflow("waiter-1")["Status"] == "SUCCESS"

    assert admin.post("/workflows/no-such-id/cancel").status == 204  # nothing to cancel, as in DBOS Transact
    assert "no-such-id" in admin.post("/workflows/no-such-id/resume").error


def test_restart_and_fork_rerun_only_the_steps_from_the_start_step(launch: Callable[..., Admin]) -> None:
    calls = {"one": 0, "two": 0, "three": 0}

    def counted(name: str) -> Callable[[], str]:
        def step() -> str:
            calls[name] += 1
            return name
        step.__name__ = f"step_{name}"
        step.__qualname__ = f"step_{name}"
        return cast(Callable[[], str], DBOS.step()(step))

    one, two, three = counted("one"), counted("two"), counted("three")

    @DBOS.workflow()
    def pipeline() -> str:
        return "-".join([one(), two(), three()])

    admin = launch()
    with SetWorkflowID("original"):
        assert pipeline() == "one-two-three"

    restarted = admin.post("/workflows/original/restart")
    assert restarted.status == 200
    new_id = restarted.json["workflow_id"]
    assert new_id != "original"
    assert result(DBOS.retrieve_workflow(new_id)) == "one-two-three"
    assert calls == {"one": 2, "two": 2, "three": 2}  # a restart runs every step again

    forked = admin.post("/workflows/original/fork", {
        "start_step": 3, "new_workflow_id": "forked-1", "application_version": DBOS.application_version})
    assert (forked.status, forked.json) == (200, {"workflow_id": "forked-1"})
    assert result(DBOS.retrieve_workflow("forked-1")) == "one-two-three"
    assert calls == {"one": 2, "two": 2, "three": 3}  # steps before 3 came from the original

    assert admin.workflow("forked-1")["ForkedFrom"] == "original"
    assert admin.workflow("original")["WasForkedFrom"] is True
    assert sorted(admin.ids("/workflows", {"forked_from": "original"})) == sorted([new_id, "forked-1"])
    default_fork = admin.post("/workflows/original/fork", None)
    assert default_fork.status == 200
    assert result(DBOS.retrieve_workflow(default_fork.json["workflow_id"])) == "one-two-three"
    assert calls == {"one": 3, "two": 3, "three": 4}  # start_step defaults to 1

    # What DBOS refuses to fork answers 500 with the message, as in DBOS Transact.
    for path, body in [("/workflows/no-such-id/restart", None), ("/workflows/no-such-id/fork", {"start_step": 2})]:
        refused = admin.post(path, body)
        assert refused.status == 500 and "no-such-id" in refused.error, refused.text
    taken = admin.post("/workflows/original/fork", {"new_workflow_id": "original"})
    assert taken.status == 500 and "original" in taken.error
    not_json = admin.call("POST", "/workflows/original/fork", raw=b"{start_step: 2}")
    assert not_json.status == 500 and not_json.error.startswith("Invalid JSON input")
    # Bad fields are the caller's to fix; a misspelt one is refused, not ignored.
    assert "start_step" in admin.post("/workflows/original/fork", {"start_step": 0}).error
    assert "start" in admin.post("/workflows/original/fork", {"start": 2}).error
    assert admin.post("/workflows/original/fork", {"new_workflow_id": ""}).status == 400
    assert calls == {"one": 3, "two": 3, "three": 4}  # none of them forked anything


def test_garbage_collect_deletes_finished_workflows_before_the_cutoff(
    launch: Callable[..., Admin]
) -> None:
    @DBOS.workflow()
    def quick(x: int) -> int:
        return x

    @DBOS.workflow()
    def waiting() -> Any:
        return DBOS.recv("go", timeout_seconds=NEVER_S)

    admin = launch()
    for name in ("gc-a", "gc-b"):
        with SetWorkflowID(name):
            quick(1)
    next_millisecond()
    with SetWorkflowID("gc-c"):
        quick(2)
    cutoff = int(admin.workflow("gc-c")["CreatedAt"])

    assert admin.post("/dbos-garbage-collect", {"cutoff_epoch_timestamp_ms": cutoff}).status == 204
    assert admin.get("/workflows/gc-a").status == 404 and admin.get("/workflows/gc-b").status == 404
    assert admin.workflow("gc-c")["Status"] == "SUCCESS"

    next_millisecond()
    with SetWorkflowID("gc-d"):
        active = DBOS.start_workflow(waiting)
    assert admin.post("/dbos-garbage-collect", {"rows_threshold": 1}).status == 204
    assert admin.get("/workflows/gc-c").status == 404  # older than the newest row
    assert admin.workflow("gc-d")["Status"] == "PENDING"
    assert admin.post("/dbos-garbage-collect", {"cutoff_epoch_timestamp_ms": now_ms() + 60_000}).status == 204
    assert admin.workflow("gc-d")["Status"] == "PENDING"  # active workflows are never collected
    DBOS.send("gc-d", "done", "go")
    assert result(active) == "done"

    # Neither field: nothing is collected, as in DBOS Transact.
    assert admin.post("/dbos-garbage-collect", {}).status == 204
    assert admin.workflow("gc-d")["Status"] == "SUCCESS"
    assert admin.post("/dbos-garbage-collect", {"rows_threshold": -1}).status == 400
    assert "cutoff" in admin.post("/dbos-garbage-collect", {"cutoff": 1}).error  # misspelt: refused


def test_global_timeout_cancels_active_workflows_created_before_the_cutoff(
    launch: Callable[..., Admin]
) -> None:
    @DBOS.workflow()
    def waiting() -> Any:
        return DBOS.recv("go", timeout_seconds=NEVER_S)

    admin = launch()
    with SetWorkflowID("old-1"):
        old = DBOS.start_workflow(waiting)
    next_millisecond()
    cutoff = now_ms()
    next_millisecond()
    with SetWorkflowID("new-1"):
        new = DBOS.start_workflow(waiting)

    answer = admin.post("/dbos-global-timeout", {"cutoff_epoch_timestamp_ms": cutoff})
    assert answer.status == 204
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        result(DBOS.retrieve_workflow(old.workflow_id))
    assert admin.workflow("old-1")["Status"] == "CANCELLED"
    assert admin.post("/dbos-global-timeout", {}).status == 204  # no cutoff: nothing cancelled
    assert admin.workflow("new-1")["Status"] == "PENDING"
    DBOS.send("new-1", "still here", "go")
    assert result(new) == "still here"
    assert admin.post("/dbos-global-timeout", {"cutoff_epoch_timestamp_ms": "soon"}).status == 400


# ----------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------


def test_unknown_paths_and_wrong_methods_answer_json(launch: Callable[..., Admin]) -> None:
    admin = launch()
    for method, path in [("GET", "/nope"), ("POST", "/nope"), ("GET", "/workflows/a/b/c"),
                         ("POST", "/workflows/a/explode")]:
        answer = admin.call(method, path)
        assert answer.status == 404 and path in answer.error
    for method, path, allowed in [("PUT", "/dbos-healthz", "GET"), ("GET", "/workflows", "POST"),
                                  ("DELETE", "/workflows/some-id", "GET"),
                                  ("GET", "/dbos-workflow-recovery", "POST"),
                                  ("PUT", "/deactivate", "GET, POST")]:
        answer = admin.call(method, path, {} if method in ("POST", "PUT") else None)
        assert answer.status == 405, (method, path, answer.text)
        assert answer.headers.get("Allow") == allowed and method in answer.error
    assert admin.get("/dbos-healthz?verbose=1").status == 200  # a query string is not part of the path
    unsupported = admin.raw(b"BREW /dbos-healthz HTTP/1.0\r\n\r\n")
    assert unsupported.status == 501 and "BREW" in unsupported.error


def test_conductor_and_head_answer_as_dbos_transact(launch: Callable[..., Admin]) -> None:
    admin = launch()
    assert (admin.get("/conductor").status, admin.get("/conductor").json) == (200, {"status": True})
    head = admin.call("HEAD", "/dbos-healthz")
    assert (head.status, head.text, head.headers["Content-Length"]) == (200, "", "7")  # a GET without its body
    assert admin.call("HEAD", "/workflows/no-such-id").status == 404
    # HEAD never runs what changes state: deactivation is GET or POST only.
    refused = admin.raw(b"HEAD /deactivate HTTP/1.0\r\n\r\n")
    assert (refused.status, refused.headers.get("Allow")) == (405, "GET, POST")
    assert not engine().intake_stopped


def test_requests_from_another_origin_change_nothing(launch: Callable[..., Admin], admin_port: int) -> None:
    @DBOS.workflow()
    def waiting() -> Any:
        return DBOS.recv("go", timeout_seconds=NEVER_S)

    admin = launch()
    with SetWorkflowID("guarded"):
        handle = DBOS.start_workflow(waiting)
    evil = {"Origin": "http://evil.example"}
    for method, path, headers in [
        ("POST", "/workflows/guarded/cancel", evil),
        ("POST", "/workflows/guarded/cancel", {"Origin": "null"}),  # a sandboxed page or a file
        ("POST", "/dbos-global-timeout", {"Origin": f"http://localhost:{admin_port + 1}"}),
        ("GET", "/deactivate", {"Sec-Fetch-Site": "cross-site"}),  # <img src=...> sends no Origin
        ("POST", "/workflows/guarded/cancel", {"Sec-Fetch-Site": "same-site"}),
    ]:
        body = {"cutoff_epoch_timestamp_ms": now_ms()} if "timeout" in path else None
        answer = admin.call(method, path, body, headers=headers)
        assert answer.status == 403 and "Refused" in answer.error, (method, path, headers, answer.text)
    assert admin.workflow("guarded")["Status"] == "PENDING"
    assert not engine().intake_stopped
    # Reading is not a change; and the server's own origin may change state.
    assert admin.call("GET", "/workflows/guarded", headers=evil).status == 200
    own = {"Origin": f"http://127.0.0.1:{admin_port}", "Sec-Fetch-Site": "same-origin"}
    assert admin.call("POST", "/workflows/guarded/cancel", headers=own).status == 204
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        result(handle)


def test_a_host_header_naming_another_host_is_refused_on_loopback(
    launch: Callable[..., Admin], admin_port: int
) -> None:
    """A page whose name was re-pointed at 127.0.0.1 (DNS rebinding) reads nothing."""
    admin = launch()
    rebound = admin.raw(b"GET /workflows/any-id HTTP/1.0\r\nHost: evil.example:%d\r\n\r\n" % admin_port)
    assert rebound.status == 403 and "evil.example" in rebound.error
    for host in (b"localhost", b"127.0.0.1", b"[::1]", b"app.localhost"):
        answer = admin.raw(b"GET /dbos-healthz HTTP/1.0\r\nHost: %s:%d\r\n\r\n" % (host, admin_port))
        assert (answer.status, answer.text) == (200, "healthy"), host


def test_workflow_records_have_dbos_transacts_keys_in_its_order(launch: Callable[..., Admin]) -> None:
    @DBOS.workflow()
    def plain(x: int) -> int:
        return x

    admin = launch()
    with SetWorkflowID("shape-1"):
        plain(4)
    record = admin.workflow("shape-1")
    assert list(record) == [
        "WorkflowUUID", "Status", "WorkflowName", "WorkflowClassName", "WorkflowConfigName",
        "AuthenticatedUser", "AssumedRole", "AuthenticatedRoles", "Input", "Output", "Error",
        "CreatedAt", "UpdatedAt", "QueueName", "ApplicationVersion", "ExecutorID", "WorkflowTimeoutMS",
        "WorkflowDeadlineEpochMS", "DeduplicationID", "Priority", "QueuePartitionKey", "ForkedFrom",
        "WasForkedFrom", "ParentWorkflowID", "DequeuedAt", "DelayUntilEpochMS", "CompletedAt",
        "Attributes", "ScheduleName", "ApplicationName"]
    assert (record["Input"], record["Output"], record["Priority"]) == ("{'args': (4,), 'kwargs': {}}", "4", "0")
    assert all(isinstance(v, str) for k, v in record.items() if k != "WasForkedFrom" and v is not None)


def test_bad_request_bodies_answer_400_with_a_clear_message(launch: Callable[..., Admin]) -> None:
    admin = launch()
    cases = [
        ("/workflows", b"{not json", "Invalid JSON input"),
        ("/workflows", b"[1, 2]", "JSON object"),
        ("/workflows", b'{"status": "FINISHED"}', "FINISHED"),
        ("/workflows", b'{"start_time": "yesterday"}', "start_time"),
        ("/workflows", b'{"limit": "ten"}', "limit"),
        ("/workflows", b'{"limit": -1}', "limit"),
        ("/workflows", b'{"sort_desc": "yes"}', "sort_desc"),
        ("/workflows", b'{"workflow_uuids": [1, 2]}', "workflow_uuids"),
        ("/queues", b'{"queue_name": 5}', "queue_name"),
        ("/dbos-workflow-recovery", b'{"executor": "x"}', "list of executor IDs"),
        ("/dbos-workflow-recovery", b"", "empty"),
        ("/dbos-garbage-collect", b'"everything"', "JSON object"),
        ("/dbos-global-timeout", b"{\xff}", "Invalid JSON input"),
    ]
    for path, raw, expected in cases:
        answer = admin.call("POST", path, raw=raw)
        assert answer.status == 400, (path, raw, answer.text)
        assert expected in answer.error, (path, raw, answer.error)

    no_length = admin.raw(b"POST /dbos-garbage-collect HTTP/1.0\r\n\r\n")
    assert no_length.status == 411 and "Content-Length" in no_length.error
    bad_length = admin.raw(b"POST /workflows HTTP/1.0\r\nContent-Length: lots\r\n\r\n{}")
    assert bad_length.status == 400 and "Content-Length" in bad_length.error
    chunked = admin.raw(b"POST /workflows HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert chunked.status == 411  # not taken for an empty body, which would list everything
    huge = admin.raw(b"POST /workflows HTTP/1.0\r\nContent-Length: 999999999\r\n\r\n{}")
    assert huge.status == 413
    # Endpoints that need no body do not need a Content-Length either.
    assert admin.raw(b"POST /workflows HTTP/1.0\r\n\r\n").status == 200


def test_an_unexpected_failure_answers_500_json_and_is_logged(
    launch: Callable[..., Admin], monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = launch()
    records: List[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("dbos").addHandler(handler)

    def broken(_: Engine) -> Any:
        raise RuntimeError("the status store is on fire")

    monkeypatch.setattr(admin_server, "management", broken)
    try:
        answer = admin.get("/workflows/any-id")
    finally:
        logging.getLogger("dbos").removeHandler(handler)
    assert (answer.status, answer.json) == (500, {"error": "the status store is on fire"})
    assert any(r.exc_info is not None and "admin server" in r.getMessage() for r in records)
    assert admin.get("/dbos-healthz").status == 200  # the server survives it
