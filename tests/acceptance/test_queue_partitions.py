"""A partitioned queue kept in the database, served by two real processes
sharing one system database: each partition key's limit holds across both.

The processes run ``partition_app.py``; this test enqueues through a
``DBOSClient``, by workflow name, as another service would. The jobs count
themselves in a SQLite file all processes share, under one write lock.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest

from dbos import DBOSClient, SetWorkflowID
from tests.acceptance.child import Child, children_of
from tests.acceptance.partition_app import ALL_KEYS, PARTITION_CONCURRENCY, QUEUE
from tests.probe import qualified, query

pytestmark = pytest.mark.acceptance

APP = str(Path(__file__).with_name("partition_app.py"))
KEYS = ["acme", "globex", "initech", "umbrella", "hooli"]
PER_KEY = 8
WAIT_S = 60.0  # an upper bound reached only when a test is already failing


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    with children_of(APP, tmp_path) as start:
        yield start


def counted(counter: Path, sql: str) -> List[Any]:
    with closing(sqlite3.connect(counter, timeout=30)) as conn:
        return list(conn.execute(sql))


def test_two_processes_keep_each_partitions_limit(sys_db_url: str, tmp_path: Path,
                                                  workers: Callable[..., Child]) -> None:
    counter = tmp_path / "counter.sqlite"
    procs = [workers(f"worker-{n}", sys_db_url, str(counter), f"exec-{n}") for n in range(2)]
    for proc in procs:
        proc.expect("READY")
    client = DBOSClient(system_database_url=sys_db_url, application_name="partition-app")
    try:
        queue = client.retrieve_queue(QUEUE)
        assert queue is not None and queue.partition_concurrency == PARTITION_CONCURRENCY
        for n in range(PER_KEY):
            for key in KEYS:
                job = f"{key}-{n}"
                with SetWorkflowID(job):
                    client.enqueue({"workflow_name": "tenant_job", "queue_name": QUEUE,
                                    "queue_partition_key": key}, key, job)
        deadline = time.monotonic() + WAIT_S
        total = PER_KEY * len(KEYS)
        while counted(counter, "SELECT COUNT(*) FROM completions")[0][0] < total:
            for proc in procs:
                assert proc.proc.poll() is None, f"a worker died:\n{proc.log_tail()}"
            assert time.monotonic() < deadline, "the jobs did not all complete"
            time.sleep(0.1)
    finally:
        client.destroy()
    for proc in procs:
        proc.stop()

    # Every key reached its limit, and no key ever ran two at once, across both processes.
    peaks = dict(counted(counter, "SELECT key, value FROM peak"))
    assert peaks.pop(ALL_KEYS) > 1  # the limit is per key: different keys ran at once
    assert peaks == {key: PARTITION_CONCURRENCY for key in KEYS}
    completions = Counter(str(r[0]) for r in counted(counter, "SELECT job FROM completions"))
    assert completions == Counter({f"{key}-{n}": 1 for key in KEYS for n in range(PER_KEY)})
    by_executor = Counter(str(r[0]) for r in counted(counter, "SELECT executor FROM completions"))
    assert set(by_executor) == {"exec-0", "exec-1"}, by_executor
    table = qualified(sys_db_url, "workflow_status")
    rows = query(sys_db_url, f"SELECT status, queue_partition_key FROM {table} WHERE queue_name = %s", (QUEUE,))
    assert Counter(str(r[0]) for r in rows) == Counter({"SUCCESS": total})
    assert Counter(str(r[1]) for r in rows) == Counter({key: PER_KEY for key in KEYS})
