"""Real processes sharing one system database, on the backend chosen with ``--backend``.

Messages, events and cancellations cross process boundaries. On PostgreSQL
every process's polling interval is set far beyond the test's patience, so
only LISTEN/NOTIFY can wake a waiter in time; on SQLite, where there is no
server to notify, waiters poll every 0.05 s. Children report through their
standard output; the test waits for their lines, never for a fixed time.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

from dbos import DBOS, DBOSConfig, SetWorkflowID
from dbos._engine.engine import Engine, peek_engine
from dbos._engine.waiters import Waiters
from dbos.error import DBOSAwaitedWorkflowCancelledError, DBOSWorkflowCancelledError
from dbos._sysdb.notifications import NOTIFY_CHANNEL, cancel_key
from tests.probe import execute, qualified, query

pytestmark = pytest.mark.acceptance

APP = str(Path(__file__).with_name("peer_app.py"))
PATIENCE_S = 60.0  # for a whole exchange; every wait inside the children is longer
WAIT_S = 30.0
NEVER_S = 300.0
POLL_SEC = {"postgres": 1000.0, "sqlite": 0.05}


class Child:
    """A peer_app process whose output lines the test reads as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, APP, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.seen: List[str] = []
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._errors: List[str] = []
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        self._errors.extend(self.proc.stderr)

    def _next(self, deadline: float) -> Optional[str]:
        try:
            line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no output in time; so far {self.seen}") from None
        if line is not None:
            self.seen.append(line)
        return line

    def expect(self, wanted: str, deadline: float) -> None:
        """Read lines until ``wanted`` (the child is then at that point)."""
        while (line := self._next(deadline)) != wanted:
            if line is None:
                raise AssertionError(f"exited without printing {wanted!r}: {''.join(self._errors)}")

    def finish(self, deadline: float) -> List[str]:
        """Every line the child printed, once it has exited cleanly."""
        while self._next(deadline) is not None:
            pass
        self.proc.wait(timeout=max(0.0, deadline - time.monotonic()) + 5)
        assert self.proc.returncode == 0, "".join(self._errors)
        return self.seen


@pytest.fixture
def poll_sec(backend: str) -> str:
    return str(POLL_SEC[backend])


@pytest.fixture
def children() -> Iterator[List[Child]]:
    started: List[Child] = []
    yield started
    for child in started:  # only a failing test leaves one running
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait(timeout=10)


def spawn(children: List[Child], *args: str) -> Child:
    child = Child(*args)
    children.append(child)
    return child


def column(url: str, workflow_id: str, name: str) -> object:
    table = qualified(url, "workflow_status")
    rows = query(url, f"SELECT {name} FROM {table} WHERE workflow_uuid = %s", (workflow_id,))
    assert len(rows) == 1, f"expected one row for {workflow_id}"
    return rows[0][0]


# ----------------------------------------------------------------------
# Messages and events between processes
# ----------------------------------------------------------------------


def test_two_processes_exchange_messages_and_events_both_ways(
    sys_db_url: str, poll_sec: str, children: List[Child]
) -> None:
    deadline = time.monotonic() + PATIENCE_S
    follower = spawn(children, "talk", sys_db_url, poll_sec, "exec-b", "conv-b", "conv-a", "follow")
    follower.expect("STARTED", deadline)  # its workflow exists: it can be sent to
    leader = spawn(children, "talk", sys_db_url, poll_sec, "exec-a", "conv-a", "conv-b", "lead")

    # A -> B message, B -> A reply, A's event read by B, B's event read by A.
    assert "RESULT ping-pong|ready:ack:ping-pong" in leader.finish(deadline)
    assert "RESULT ping|ack:ping-pong" in follower.finish(deadline)
    for workflow_id, executor in (("conv-a", "exec-a"), ("conv-b", "exec-b")):
        assert column(sys_db_url, workflow_id, "status") == "SUCCESS"
        assert column(sys_db_url, workflow_id, "executor_id") == executor
    table = qualified(sys_db_url, "notifications")
    unread = query(sys_db_url, f"SELECT COUNT(*) FROM {table} WHERE NOT consumed")
    assert unread == [(0,)]


# ----------------------------------------------------------------------
# Cancellation between processes
# ----------------------------------------------------------------------


def test_a_cancel_from_this_process_stops_a_workflow_waiting_in_another(
    dbos: type[DBOS], sys_db_url: str, poll_sec: str, children: List[Child]
) -> None:
    deadline = time.monotonic() + PATIENCE_S
    peer = spawn(children, "block", sys_db_url, poll_sec, "exec-b", "remote-victim")
    peer.expect("WAITING", deadline)  # blocked in recv: only a wake-up ends it in time

    DBOS.cancel_workflow("remote-victim")

    lines = peer.finish(deadline)
    assert lines[-2:] == ["BODY_CANCELLED", "AWAITED_CANCELLED"]
    assert column(sys_db_url, "remote-victim", "status") == "CANCELLED"
    assert column(sys_db_url, "remote-victim", "executor_id") == "exec-b"


# ----------------------------------------------------------------------
# The PostgreSQL listener
# ----------------------------------------------------------------------


class WatchedWaiters(Waiters):
    """The engine's real waiter registry, also telling the test when a key is registered."""

    def __init__(self) -> None:
        super().__init__()
        self.registered: "queue.Queue[str]" = queue.Queue()

    def register(self, key: str, event: Optional[threading.Event] = None) -> threading.Event:
        found = super().register(key, event)
        self.registered.put(key)
        return found

    def wait_for(self, key: str) -> None:
        give_up = time.monotonic() + WAIT_S
        while self.registered.get(timeout=max(0.0, give_up - time.monotonic())) != key:
            pass


def wait_for_step(url: str, workflow_id: str, name: str) -> None:
    """Until ``workflow_id`` has recorded a step called ``name``."""
    sql = (f"SELECT 1 FROM {qualified(url, 'operation_outputs')} "
           "WHERE workflow_uuid = %s AND function_name = %s")
    give_up = time.monotonic() + WAIT_S
    while not query(url, sql, (workflow_id, name)):
        assert time.monotonic() < give_up, f"{workflow_id} never recorded {name}"
        time.sleep(0.01)


def listener_pids(url: str) -> List[int]:
    sql = (
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND state = 'idle' AND query = %s"
    )
    return [int(r[0]) for r in query(url, sql, (f"LISTEN {NOTIFY_CHANNEL}",))]


@pytest.fixture
def patient(backend: str, config: DBOSConfig) -> Iterator[Engine]:
    """A launched DBOS that, on PostgreSQL, can only be woken by its listener."""
    if backend != "postgres":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    DBOS(config={**config, "notification_listener_polling_interval_sec": 1000.0})
    DBOS.launch()
    engine = peek_engine()
    assert engine is not None and engine.listener is not None
    engine.waiters = WatchedWaiters()
    assert engine.listener.ready.wait(WAIT_S)
    yield engine
    DBOS.destroy(destroy_registry=True)


def test_the_listener_reconnects_and_catches_up_on_what_it_missed(
    patient: Engine, sys_db_url: str
) -> None:
    listener, waiters = patient.listener, patient.waiters
    assert listener is not None and isinstance(waiters, WatchedWaiters)
    seen: List[BaseException] = []

    @DBOS.workflow()
    def stuck() -> object:
        try:
            return DBOS.recv("never", timeout_seconds=NEVER_S)
        except DBOSWorkflowCancelledError as exc:
            seen.append(exc)
            raise

    with SetWorkflowID("stuck"):
        handle = DBOS.start_workflow(stuck)
    waiters.wait_for(cancel_key("stuck"))
    # Past the recv's first moments, in which its own write of the wake-up
    # time would notice the cancellation without the listener.
    wait_for_step(sys_db_url, "stuck", "DBOS.sleep")

    # A cancellation whose notification never arrives (written behind the
    # library's back), then the listener's connection dies.
    table = qualified(sys_db_url, "workflow_status")
    execute(sys_db_url, f"UPDATE {table} SET status = 'CANCELLED' WHERE workflow_uuid = %s", ("stuck",))
    [old] = listener_pids(sys_db_url)
    execute(sys_db_url, "SELECT pg_terminate_backend(%s)", (old,))

    # Only the listener, once back in place and re-reading what it may have
    # missed, can stop the workflow in time.
    box: List[BaseException] = []
    thread = threading.Thread(target=_capture, args=(handle.get_result, box), daemon=True)
    thread.start()
    thread.join(WAIT_S)
    assert not thread.is_alive(), "the cancellation missed while disconnected was never noticed"
    assert len(box) == 1 and isinstance(box[0], DBOSAwaitedWorkflowCancelledError), box
    assert len(seen) == 1
    assert listener.ready.is_set()
    [new] = listener_pids(sys_db_url)
    assert new != old

    # And notifications from other sessions reach this process again.
    woken = patient.waiters.register("test::after-reconnect")
    execute(sys_db_url, "SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, "test::after-reconnect"))
    assert woken.wait(WAIT_S)


def _capture(call: Callable[[], object], box: List[BaseException]) -> None:
    try:
        call()
    except BaseException as exc:  # the test inspects it
        box.append(exc)
