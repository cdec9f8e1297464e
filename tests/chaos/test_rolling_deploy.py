"""A PostgreSQL restart in the middle of recovering a dead executor's work
(DBOS Transact #716), through the fault proxy."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Callable, Iterator, Tuple

import pytest

from dbos import DBOS, DBOSConfig, Queue, SetWorkflowID
from dbos._sysdb import SystemDatabase
from tests.chaos.proxy import FaultProxy
from tests.chaos.support import proxy, require_postgres, through
from tests.integration.sysdb_sql import WAIT_S, engine, status_row, wait_for_launch_recovery
from tests.integration.test_rolling_deploy import VERSION, left_by_dead_executor, silence

pytestmark = pytest.mark.chaos
__all__ = ["proxy"]  # a fixture, imported for pytest

DIRECT = 20
QUEUED = 4
# The recovery claim's statement (dbos/_sysdb/workflows.py), as it goes over the wire.
CLAIM_MARKER = b"recovery_attempts = CASE"


@pytest.fixture
def launched(backend: str, fresh_postgres_url: str,
             proxy: FaultProxy) -> Iterator[Tuple[Counter[Tuple[str, str]], Callable[[str], str], Queue]]:
    require_postgres(backend)
    runs: Counter[Tuple[str, str]] = Counter()
    lock = threading.Lock()

    def ran(what: str, workflow_id: str) -> None:
        with lock:
            runs[(what, workflow_id)] += 1

    @DBOS.step(name="first")
    def first(workflow_id: str) -> None:
        ran("first", workflow_id)

    @DBOS.step(name="middle")
    def middle(workflow_id: str) -> None:
        ran("middle", workflow_id)

    @DBOS.step(name="last")
    def last(workflow_id: str) -> None:
        ran("last", workflow_id)

    @DBOS.workflow(name="deploy_work")
    def work(label: str) -> str:
        workflow_id = DBOS.workflow_id or label
        first(workflow_id)
        middle(workflow_id)
        last(workflow_id)
        return label.upper()

    queue = Queue("deploy-jobs", concurrency=2, polling_interval_sec=0.1)
    DBOS(config=DBOSConfig(name="test-app", system_database_url=through(fresh_postgres_url, proxy),
                           executor_id="live", application_version=VERSION, executor_timeout_sec=1))
    DBOS.launch()
    wait_for_launch_recovery()
    yield runs, work, queue
    proxy.accept()
    DBOS.destroy(destroy_registry=True)


def test_dbos_716_a_database_restart_during_recovery_strands_nothing(
    launched: Tuple[Counter[Tuple[str, str]], Callable[[str], str], Queue], proxy: FaultProxy,
) -> None:
    """DBOS Transact #716: an executor recovering a crashed one's workflows lost
    its database connection mid-way (a failover, which often comes with the
    crash); the error was logged and swallowed, and the workflows it was
    claiming stayed PENDING under the dead executor for good. Here the
    connection drops right after the takeover's recovery claim is sent (the
    server may have applied it, the client never hears), and new connections
    are refused for a while: every workflow still finishes, no checkpointed
    step runs again, and none is left PENDING."""
    runs, work, queue = launched
    ids = [f"direct-{i}" for i in range(DIRECT)] + [f"job-{i}" for i in range(QUEUED)]
    for workflow_id in ids:
        with SetWorkflowID(workflow_id):
            if workflow_id.startswith("job-"):
                queue.enqueue(work, workflow_id)
            else:
                DBOS.start_workflow(work, workflow_id)
    assert [DBOS.retrieve_workflow(w).get_result() for w in ids] == [w.upper() for w in ids]
    runs.clear()
    for workflow_id in ids:
        left_by_dead_executor(workflow_id, "dead")

    sysdb = engine().sysdb
    assert isinstance(sysdb, SystemDatabase)
    proxy.drop_on(CLAIM_MARKER)
    silence(sysdb, "dead")  # the heartbeat takes over within a second, and recovers
    assert proxy.dropped.wait(WAIT_S), "the takeover's recovery claim was never sent"
    proxy.refuse()
    proxy.cut()
    assert proxy.wait_refused(1, WAIT_S)  # the library tried again while the database was away
    proxy.accept()

    assert [DBOS.retrieve_workflow(w).get_result() for w in ids] == [w.upper() for w in ids]
    assert all(status_row(w)["status"] == "SUCCESS" and status_row(w)["executor_id"] == "live" for w in ids)
    assert {k for k, n in runs.items() if k[0] == "first"} == set()  # checkpointed before the "crash"
    assert Counter(w for (what, w), n in runs.items() if what == "last" for _ in range(n)) == Counter(
        {w: 1 for w in ids})
