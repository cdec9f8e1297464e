"""The metrics endpoints over real HTTP, on the backend chosen with ``--backend``:
what this process ran, counted by the engine; what the queues hold, read
from the database at scrape time.

Counters are per process and tests share the process, so each test counts
workflows and steps of its own names.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List

import pytest

from dbos import DBOS, Queue
from dbos.error import DBOSAwaitedWorkflowCancelledError
from tests.integration.sysdb_sql import set_pending
from tests.integration.test_admin_server import NEVER_S, WAIT_S, Admin, admin_port, launch, name_of
from tests.threads import result

__all__ = ["admin_port", "launch"]  # the fixtures, shared with test_admin_server


def samples(admin: Admin) -> Dict[str, float]:
    """``GET /metrics`` as {sample line without its value: value}."""
    answer = admin.get("/metrics")
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    found: Dict[str, float] = {}
    for line in answer.text.splitlines():
        if not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            found[key] = float(value)
    return found


def test_workflow_and_step_counts_by_name(launch: Callable[..., Admin]) -> None:
    @DBOS.step()
    def metered_step(x: int) -> int:
        return x + 1

    @DBOS.workflow()
    def metered_ok(x: int) -> int:
        return metered_step(metered_step(x))

    @DBOS.workflow()
    def metered_bad() -> None:
        raise ValueError("no")

    @DBOS.workflow()
    def metered_waiting() -> Any:
        return DBOS.recv("go", timeout_seconds=NEVER_S)

    admin = launch()
    assert [metered_ok(1), metered_ok(5)] == [3, 7]
    with pytest.raises(ValueError):
        metered_bad()
    waiting = DBOS.start_workflow(metered_waiting)
    DBOS.cancel_workflow(waiting.workflow_id)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        result(waiting)

    found = samples(admin)
    ok, bad, cancelled = (name_of(f) for f in (metered_ok, metered_bad, metered_waiting))
    for name, counts in ((ok, (2, 2, 0, 0)), (bad, (1, 0, 1, 0)), (cancelled, (1, 0, 0, 1))):
        got = tuple(found[f'dbos_workflows_{event}_total{{name="{name}"}}']
                    for event in ("started", "completed", "failed", "cancelled"))
        assert got == counts, name
    step = name_of(metered_step)
    assert found[f'dbos_step_duration_seconds_count{{name="{step}"}}'] == 4
    assert found[f'dbos_step_duration_seconds_bucket{{name="{step}",le="+Inf"}}'] == 4
    assert 0 <= found[f'dbos_step_duration_seconds_sum{{name="{step}"}}'] < WAIT_S
    # The JSON for the dashboard holds the same figures.
    figures = admin.get("/dbos-metrics.json").json
    rows = {w["name"]: w for w in figures["workflows"]}
    assert (rows[ok]["started"], rows[ok]["completed"], rows[bad]["failed"]) == (2, 2, 1)
    steps = {s["name"]: s for s in figures["steps"]}
    assert steps[step]["count"] == 4 and steps[step]["buckets"][-1] == [None, 4]


def test_queue_depth_wait_executors_and_recoveries(launch: Callable[..., Admin]) -> None:
    queue = Queue("metered-queue", concurrency=1)
    running = threading.Event()

    @DBOS.workflow()
    def metered_job() -> Any:
        running.set()
        return DBOS.recv("go", timeout_seconds=NEVER_S)

    @DBOS.workflow()
    def metered_plain() -> int:
        return 1

    admin = launch()
    first = queue.enqueue(metered_job)
    assert running.wait(WAIT_S)
    second = queue.enqueue(metered_job)  # waits behind the first: concurrency 1
    found = samples(admin)
    assert found['dbos_queue_depth{queue="metered-queue",status="PENDING"}'] == 1
    assert found['dbos_queue_depth{queue="metered-queue",status="ENQUEUED"}'] == 1
    assert 0 <= found['dbos_queue_oldest_wait_seconds{queue="metered-queue"}'] < WAIT_S
    assert sum(v for k, v in found.items() if k.startswith("dbos_executors{")) >= 1
    queues: List[Dict[str, Any]] = admin.get("/dbos-metrics.json").json["queues"]
    assert {(q["status"], q["depth"]) for q in queues if q["queue"] == "metered-queue"} == {
        ("PENDING", 1), ("ENQUEUED", 1)}
    for handle in (first, second):
        DBOS.send(handle.workflow_id, "done", "go")
        assert result(handle) == "done"

    recovered = samples(admin)["dbos_workflows_recovered_total"]
    handle = DBOS.start_workflow(metered_plain)
    assert result(handle) == 1
    set_pending(handle.workflow_id)
    assert admin.post("/dbos-workflow-recovery", [DBOS.executor_id]).json == [handle.workflow_id]
    assert samples(admin)["dbos_workflows_recovered_total"] == recovered + 1
    assert result(DBOS.retrieve_workflow(handle.workflow_id)) == 1
