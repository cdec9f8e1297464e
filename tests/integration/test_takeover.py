"""Takeover of dead executors' work, on the chosen backend.

An executor whose heartbeat is older than the limit is presumed dead: one
live executor of the same application version (exactly one, however many
try at once) requeues its queued workflows and recovers the others. A fresh
heartbeat, or another application version, keeps its work where it is.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from dbos import DBOS, DBOSConfig, Queue, SetWorkflowID, _runtime
from dbos._engine.heartbeat import Heartbeat, beat_interval, claim_executor_id
from dbos._sysdb import SystemDatabase
from tests.integration.sysdb_sql import set_pending, status_row, sys_sql, wait_for_launch_recovery

CLAIMANTS = 6
STALE_MS = 1000


def _workflow(sysdb: SystemDatabase, workflow_id: str, executor: str, version: str,
              status: str = "PENDING", queue: Optional[str] = None) -> None:
    sysdb.run(lambda: sysdb.models.workflow_status.insert(
        workflow_uuid=workflow_id, status=status, name="wf", executor_id=executor, application_version=version,
        queue_name=queue, started_at_epoch_ms=1 if queue else None, created_at=1, updated_at=1).execute())


def _silence(sysdb: SystemDatabase, executor: str, version: str, app: str = "test-app") -> None:
    """Register an executor and make its last heartbeat ancient."""
    sysdb.record_heartbeat(executor, version, app, "host", 1)
    model = sysdb.models.executors
    sysdb.run(lambda: model.update(heartbeat_at=0).where(model.executor_id == executor).execute())


def _row(sysdb: SystemDatabase, workflow_id: str) -> Dict[str, Any]:
    row = sysdb.workflow_row(workflow_id)
    assert row is not None
    return row


def _executor_ids(sysdb: SystemDatabase) -> List[str]:
    model = sysdb.models.executors
    return sysdb.run(lambda: sorted(r[0] for r in model.select(model.executor_id).tuples()))


@pytest.fixture
def dead_executor(sysdb: SystemDatabase) -> SystemDatabase:
    """A silent executor of version v1 with a direct and a queued PENDING workflow, and a finished one."""
    _workflow(sysdb, "direct", "dead", "v1")
    _workflow(sysdb, "queued", "dead", "v1", queue="jobs")
    _workflow(sysdb, "done", "dead", "v1", status="SUCCESS")
    _silence(sysdb, "dead", "v1")
    return sysdb


def test_exactly_one_of_many_concurrent_claimants_takes_over(dead_executor: SystemDatabase,
                                                             sys_db_url: str) -> None:
    # Each claimant on its own pool, as separate processes would be.
    claimants = [SystemDatabase(sys_db_url) for _ in range(CLAIMANTS)]
    barrier = threading.Barrier(CLAIMANTS)
    results: Dict[int, Optional[List[str]]] = {}

    def claim(index: int) -> None:
        barrier.wait()
        results[index] = claimants[index].take_over_executor("dead", "v1", STALE_MS, f"live-{index}")

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(CLAIMANTS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        for db in claimants:
            db.close()
    winners = [i for i, moved in results.items() if moved is not None]
    assert len(results) == CLAIMANTS and len(winners) == 1
    assert list(results[winners[0]] or {}) == ["direct"]
    direct, queued = _row(dead_executor, "direct"), _row(dead_executor, "queued")
    assert (direct["status"], direct["executor_id"]) == ("PENDING", f"live-{winners[0]}")
    assert (queued["status"], queued["started_at_epoch_ms"]) == ("ENQUEUED", None)
    assert _row(dead_executor, "done")["status"] == "SUCCESS"
    assert _executor_ids(dead_executor) == []  # the claim took the dead executor's row


def test_a_fresh_heartbeat_prevents_takeover(dead_executor: SystemDatabase) -> None:
    # The dead executor comes back (same ID): its first beat makes it live again.
    assert dead_executor.record_heartbeat("dead", "v1", "test-app", "host", 2) is True
    assert dead_executor.stale_executors("live", "v1", "test-app", STALE_MS) == []
    assert dead_executor.take_over_executor("dead", "v1", STALE_MS, "live") is None
    assert _row(dead_executor, "direct")["executor_id"] == "dead"
    assert _row(dead_executor, "queued")["status"] == "PENDING"


def test_only_executors_of_the_same_version_and_application_are_stale_for_us(
        dead_executor: SystemDatabase) -> None:
    _silence(dead_executor, "other-app", "v1", app="another-app")
    _silence(dead_executor, "old", "v0")
    assert dead_executor.stale_executors("live", "v1", "test-app", STALE_MS) == ["dead"]
    assert dead_executor.stale_executors("live", "v0", "test-app", STALE_MS) == ["old"]
    # Claiming under another version finds no such executor row, and moves nothing.
    assert dead_executor.take_over_executor("dead", "v0", STALE_MS, "live") is None
    assert _row(dead_executor, "direct")["executor_id"] == "dead"


def test_a_missing_row_is_reported_by_the_heartbeat(sysdb: SystemDatabase) -> None:
    assert sysdb.record_heartbeat("me", "v1", "test-app", "host", 1) is False  # first beat
    assert sysdb.record_heartbeat("me", "v1", "test-app", "host", 1) is True
    assert beat_interval(60) == 5.0 and beat_interval(1) == 0.25


def _holder(sysdb: SystemDatabase) -> Tuple[str, int]:
    model = sysdb.models.executors
    return sysdb.run(lambda: model.select(model.hostname, model.pid).where(model.executor_id == "shared").tuples()[0])


def _dead_pid() -> int:
    """The pid of a process that has ended and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


@pytest.mark.parametrize("holder", ["this process", "a dead process here", "nobody", "a silent process elsewhere"])
def test_a_launch_keeps_its_executor_id_unless_a_live_process_holds_it(sysdb: SystemDatabase, holder: str) -> None:
    """DBOS Transact #804: the configured ID is kept when it is free, stale,
    or held by a process that is gone (a restart after a crash); the row then names this process."""
    here = socket.gethostname()
    if holder != "nobody":
        pid = {"this process": os.getpid(), "a dead process here": _dead_pid()}.get(holder, 7)
        sysdb.record_heartbeat("shared", "v1", "test-app", here if pid != 7 else "elsewhere", pid)
        if holder == "a silent process elsewhere":
            _silence(sysdb, "shared", "v1")
    assert claim_executor_id(sysdb, "shared", "v1", "test-app", STALE_MS / 1000) == "shared"
    assert _holder(sysdb) == (here, os.getpid())


@pytest.mark.parametrize("holder", ["a live process here", "a process elsewhere"])
def test_a_launch_derives_a_new_executor_id_when_a_live_process_holds_it(
        sysdb: SystemDatabase, holder: str, caplog: pytest.LogCaptureFixture) -> None:
    hostname, pid = (socket.gethostname(), os.getppid()) if holder == "a live process here" else ("elsewhere", 7)
    sysdb.record_heartbeat("shared", "v1", "test-app", hostname, pid)
    derived = claim_executor_id(sysdb, "shared", "v1", "test-app", 60)
    assert derived.startswith("shared-") and derived != claim_executor_id(sysdb, "shared", "v1", "test-app", 60)
    assert _holder(sysdb) == (hostname, pid)  # the live holder keeps its row
    assert "'shared' (version v1) is in use by a live process" in caplog.text and derived in caplog.text


# ----------------------------------------------------------------------
# A launched executor takes over by itself
# ----------------------------------------------------------------------

bodies: List[str] = []


@pytest.fixture
def launched(config: DBOSConfig) -> Iterator[Tuple[Heartbeat, Any, Queue]]:
    """A launched executor "live" of version v1 (its heartbeat), with a workflow and a queue.
    Declared here: every test's teardown clears the registry."""
    bodies.clear()

    @DBOS.workflow()
    def takeover_workflow(label: str) -> str:
        bodies.append(label)
        return label.upper()

    jobs = Queue("takeover-jobs")
    DBOS(config={**config, "executor_id": "live", "application_version": "v1", "executor_timeout_sec": 1})
    DBOS.launch()
    wait_for_launch_recovery()
    runtime = _runtime.current()
    assert runtime is not None and runtime._heartbeat is not None
    yield runtime._heartbeat, takeover_workflow, jobs
    DBOS.destroy(destroy_registry=True)


def _orphan(workflow_id: str, executor: str, version: str) -> None:
    """A finished workflow made to look as if ``executor`` died running it."""
    set_pending(workflow_id)
    sys_sql("UPDATE {status} SET executor_id = ?, application_version = ? WHERE workflow_uuid = ?",
            (executor, version, workflow_id))


def test_a_launched_executor_takes_over_a_silent_one_of_its_version_only(
        launched: Tuple[Heartbeat, Any, Queue]) -> None:
    heartbeat, takeover_workflow, jobs = launched
    with SetWorkflowID("direct-1"):
        assert takeover_workflow("direct") == "DIRECT"
    assert jobs.enqueue(takeover_workflow, "queued").get_result() == "QUEUED"
    with SetWorkflowID("old-1"):
        takeover_workflow("old")
    sysdb = heartbeat.engine.sysdb
    assert isinstance(sysdb, SystemDatabase)
    bodies.clear()
    # The other version's executor first, so that the takeover of "dead" proves it was passed over.
    _orphan("old-1", "dead-old", "v0")
    _silence(sysdb, "dead-old", "v0")
    queued_id = [r[0] for r in sys_sql("SELECT workflow_uuid FROM {status} WHERE queue_name = ?",
                                       ("takeover-jobs",))][0]
    _orphan("direct-1", "dead", "v1")
    _orphan(queued_id, "dead", "v1")
    _silence(sysdb, "dead", "v1")
    assert DBOS.retrieve_workflow("direct-1").get_result() == "DIRECT"
    assert DBOS.retrieve_workflow(queued_id).get_result() == "QUEUED"
    assert sorted(bodies) == ["direct", "queued"]
    assert status_row("direct-1")["executor_id"] == "live"
    assert status_row(queued_id)["executor_id"] == "live"
    assert heartbeat.take_over_silent() == 0  # v0's executor is not ours to take over
    old = status_row("old-1")
    assert (old["status"], old["executor_id"]) == ("PENDING", "dead-old")
    assert "dead-old" in _executor_ids(sysdb) and "dead" not in _executor_ids(sysdb)
