"""Rolling deploys: DBOS Transact's recovery races, as named tests, on the chosen backend.

Each test is named after the DBOS Transact (Python) issue whose scenario it
replays. Work "left by a dead executor" is staged as a SIGKILL leaves it: a
PENDING row under that executor's ID, with its first step checkpointed and
the rest not, and a silent heartbeat. The scenarios that need real processes
(#804, #805) are in tests/acceptance/test_rolling_deploy.py, and the one
that needs a PostgreSQL restart (#716) in tests/chaos/test_rolling_deploy.py.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Callable, Iterator, NamedTuple

import pytest

from dbos import DBOS, DBOSConfig, Queue, SetWorkflowID, _runtime
from dbos._engine.heartbeat import Heartbeat
from dbos._engine.recovery import recover_pending
from dbos._sysdb import SystemDatabase
from tests.integration.sysdb_sql import WAIT_S, engine, set_pending, status_row, sys_sql, wait_for_launch_recovery

VERSION = "deploy-v1"


class Ledger:
    """Each step's runs per workflow; ``gate`` holds the middle step when closed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: Counter[tuple[str, str]] = Counter()
        self.gate = threading.Event()
        self.gate.set()
        self.held = threading.Semaphore(0)

    def ran(self, what: str, workflow_id: str) -> None:
        with self.lock:
            self.runs[(what, workflow_id)] += 1

    def count(self, what: str, workflow_id: str) -> int:
        with self.lock:
            return self.runs[(what, workflow_id)]


class Deployed(NamedTuple):
    ledger: Ledger
    work: Callable[[str], str]
    queue: Queue
    heartbeat: Heartbeat
    sysdb: SystemDatabase


@pytest.fixture
def deployed(config: DBOSConfig) -> Iterator[Deployed]:
    """A launched executor "live" of VERSION, with a three-step workflow and a queue."""
    ledger = Ledger()

    @DBOS.step(name="first")
    def first(workflow_id: str) -> None:
        ledger.ran("first", workflow_id)

    @DBOS.step(name="middle")
    def middle(workflow_id: str) -> None:
        ledger.ran("middle", workflow_id)
        if not ledger.gate.is_set():
            ledger.held.release()
            assert ledger.gate.wait(WAIT_S)

    @DBOS.step(name="last")
    def last(workflow_id: str) -> None:
        ledger.ran("last", workflow_id)

    @DBOS.workflow(name="deploy_work")
    def work(label: str) -> str:
        workflow_id = DBOS.workflow_id or label
        ledger.ran("body", workflow_id)
        first(workflow_id)
        middle(workflow_id)
        last(workflow_id)
        return label.upper()

    queue = Queue("deploy-jobs", concurrency=1, polling_interval_sec=0.1)
    DBOS(config={**config, "executor_id": "live", "application_version": VERSION, "executor_timeout_sec": 1})
    DBOS.launch()
    wait_for_launch_recovery()
    runtime = _runtime.current()
    assert runtime is not None and runtime._heartbeat is not None
    sysdb = runtime._heartbeat.engine.sysdb
    assert isinstance(sysdb, SystemDatabase)
    yield Deployed(ledger, work, queue, runtime._heartbeat, sysdb)
    ledger.gate.set()
    DBOS.destroy(destroy_registry=True)


def left_by_dead_executor(workflow_id: str, executor: str) -> None:
    """A finished workflow made to look as if ``executor`` was killed in its middle step."""
    set_pending(workflow_id)
    sys_sql("UPDATE {status} SET executor_id = ?, application_version = ? WHERE workflow_uuid = ?",
            (executor, VERSION, workflow_id))
    sys_sql("DELETE FROM {steps} WHERE workflow_uuid = ? AND function_id > 1", (workflow_id,))


def silence(sysdb: SystemDatabase, executor: str) -> None:
    """Register ``executor`` with a heartbeat long past any limit."""
    sysdb.record_heartbeat(executor, VERSION, "test-app", "gone-host", 1)
    model = sysdb.models.executors
    sysdb.run(lambda: model.update(heartbeat_at=0).where(model.executor_id == executor).execute())


def finished_once(d: Deployed, *workflow_ids: str) -> None:
    for workflow_id in workflow_ids:
        assert DBOS.retrieve_workflow(workflow_id).get_result() == workflow_id.upper()
        assert d.ledger.count("first", workflow_id) == 0  # checkpointed before the "kill": never again
        assert d.ledger.count("middle", workflow_id) == 1
        assert d.ledger.count("last", workflow_id) == 1


def test_dbos_742_a_stale_recovery_list_never_runs_work_someone_else_claimed(deployed: Deployed) -> None:
    """DBOS Transact #742: a recovery pass that read the PENDING workflows of a
    dead executor, and was overtaken (another pass sent its queued workflow
    back to the queue, where it was claimed again), still executed the body
    from its stale list: a second run beside the queue's. Here the stale pass
    is the admin endpoint's recovery of the dead executor, and what overtook
    it is the heartbeat's takeover of that executor: neither the queued job
    (now running from its queue) nor the direct workflow (now recovered by the
    taker) may start again."""
    d = deployed
    with SetWorkflowID("stale-direct"):
        d.work("stale-direct")
    with SetWorkflowID("stale-job"):
        job = d.queue.enqueue(d.work, "stale-job")
    assert job.get_result() == "STALE-JOB"
    d.ledger.runs.clear()
    d.ledger.gate.clear()
    for workflow_id in ("stale-direct", job.workflow_id):
        left_by_dead_executor(workflow_id, "dead")
    stale = d.sysdb.pending_attempts("dead", VERSION)
    assert set(stale) == {"stale-direct", job.workflow_id}

    silence(d.sysdb, "dead")  # the heartbeat takes over: the job goes back to its queue, the other is recovered
    for _ in range(2):
        assert d.ledger.held.acquire(timeout=WAIT_S), "the taken-over workflows did not start"
    assert all(d.ledger.count("middle", w) == 1 for w in stale)
    attempts = {w: status_row(w)["recovery_attempts"] for w in stale}
    assert {status_row(w)["executor_id"] for w in stale} == {"live"}

    assert recover_pending(engine(), stale) == []  # the stale pass: nothing is its to run
    assert {w: status_row(w)["recovery_attempts"] for w in stale} == attempts
    d.ledger.gate.set()
    finished_once(d, *stale)
    assert all(d.ledger.count("body", w) == 1 for w in stale)
