"""Queues and schedules shared by several real processes on one system database.

The processes run ``queue_app.py``. Draining jobs record themselves in an
application database (PostgreSQL): how many run at once (``peak``, counted
under a lock shared by all processes), every start, and every completion.
Several workers claiming from one queue need PostgreSQL's row locks, so those
tests skip on SQLite; the schedule test runs on both backends.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Set, Tuple

import pytest

from tests.acceptance.child import Child, children_of
from tests.acceptance.queue_app import APP_SCHEMA, CONCURRENCY
from tests.conftest import postgres_url
from tests.probe import drop_database, execute, maintenance_url, qualified, query

pytestmark = pytest.mark.acceptance

APP = str(Path(__file__).with_name("queue_app.py"))
JOBS = 1000
DRAIN_S = 60.0  # an upper bound reached only when a test is already failing
ALL_JOBS = {f"job-{i:04d}" for i in range(JOBS)}


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """Start children; any still running at the end are killed."""
    with children_of(APP, tmp_path) as start:
        yield start


@pytest.fixture
def pg_only(backend: str) -> None:
    if backend != "postgres":
        pytest.skip("several processes claiming from one queue need PostgreSQL; run with --backend postgres")


@pytest.fixture
def app_url(pg_only: None) -> Iterator[str]:
    """A fresh PostgreSQL application database with the jobs' bookkeeping tables."""
    name = f"dbos_test_app_{uuid.uuid4().hex[:12]}"
    url = postgres_url(name)
    execute(maintenance_url(url), f'CREATE DATABASE "{name}"')
    execute(url, APP_SCHEMA)
    yield url
    drop_database(url)


def wait_until(predicate: Callable[[], bool], what: str, workers: List[Child], timeout: float = DRAIN_S) -> None:
    """Re-check ``predicate`` (a database read) until it holds, failing fast if a worker died."""
    deadline = time.monotonic() + timeout
    while not predicate():
        for child in workers:
            assert child.alive(), f"{child.name} died:\n{child.log_tail()}"
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


VICTIM_TAG = "dbos_test_victim"


def tagged(url: str) -> str:
    """``url`` with an application name that marks the victim's server sessions."""
    return f"{url}{'&' if '?' in url else '?'}application_name={VICTIM_TAG}"


def victim_sessions(url: str) -> int:
    sql = "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = %s"
    return int(query(url, sql, (VICTIM_TAG,))[0][0])


def completed(app_url: str) -> int:
    return int(query(app_url, "SELECT COUNT(*) FROM completions")[0][0])


def counts(app_url: str, table: str) -> Counter[str]:
    return Counter(str(r[0]) for r in query(app_url, f"SELECT job FROM {table}"))


def enqueue_jobs(start: Callable[..., Child], sys_url: str) -> None:
    enqueuer = start("enqueuer", "enqueue", sys_url, str(JOBS))
    enqueuer.expect("ENQUEUED")
    assert enqueuer.proc.wait(timeout=60) == 0, enqueuer.log_tail()


def job_rows(sys_url: str) -> Dict[str, Tuple[str, int, str]]:
    """workflow ID -> (status, recovery_attempts, executor_id) of every drain job."""
    table = qualified(sys_url, "workflow_status")
    rows = query(sys_url, f"SELECT workflow_uuid, status, recovery_attempts, executor_id FROM {table} "
                          "WHERE queue_name = %s OR workflow_uuid LIKE %s", ("shared-drain", "job-%"))
    return {str(r[0]): (str(r[1]), int(r[2]), str(r[3])) for r in rows}


def test_three_processes_drain_a_queue_once_each_under_one_global_limit(
    sys_db_url: str, app_url: str, children: Callable[..., Child],
) -> None:
    enqueue_jobs(children, sys_db_url)
    workers = [children(f"worker-{n}", "work", sys_db_url, app_url, f"exec-{n}", "0") for n in range(3)]
    for worker in workers:
        worker.expect("READY")
    wait_until(lambda: completed(app_url) >= JOBS, f"{JOBS} jobs completed", workers)
    for worker in workers:
        worker.stop()

    assert counts(app_url, "completions") == Counter({job: 1 for job in ALL_JOBS})
    assert counts(app_url, "starts") == Counter({job: 1 for job in ALL_JOBS})
    assert query(app_url, "SELECT COUNT(*) FROM running") == [(0,)]
    # The limit was reached across processes, and never exceeded.
    assert query(app_url, "SELECT value FROM peak") == [(CONCURRENCY,)]
    by_executor = Counter(str(r[0]) for r in query(app_url, "SELECT executor FROM completions"))
    assert set(by_executor) == {"exec-0", "exec-1", "exec-2"}, by_executor
    rows = job_rows(sys_db_url)
    assert set(rows) == ALL_JOBS
    assert {(status, attempts) for status, attempts, _ in rows.values()} == {("SUCCESS", 1)}
    assert Counter(executor for _, _, executor in rows.values()) == by_executor


def test_killed_worker_restarted_finishes_its_share_and_every_job_completes_once(
    sys_db_url: str, app_url: str, children: Callable[..., Child],
) -> None:
    enqueue_jobs(children, sys_db_url)
    survivors = [children(f"worker-{n}", "work", sys_db_url, app_url, f"exec-{n}", "0") for n in range(2)]
    victim = children("victim", "work", tagged(sys_db_url), tagged(app_url), "exec-victim", "40")
    for worker in [*survivors, victim]:
        worker.expect("READY")
    hung = victim.expect("HANGING").split()[1]  # its 40th job is stuck mid-run
    victim.kill()
    killed_ms = int(time.time() * 1000)
    # A statement the victim sent just before dying may still commit: its
    # server sessions end only once they notice the client is gone.
    wait_until(lambda: not victim_sessions(sys_db_url), "the victim's sessions ended", survivors)

    # What the victim held stays PENDING under its executor ID while it is down.
    table = qualified(sys_db_url, "workflow_status")
    stranded: Set[str] = {str(r[0]) for r in query(
        sys_db_url, f"SELECT workflow_uuid FROM {table} WHERE status = 'PENDING' AND executor_id = %s",
        ("exec-victim",))}
    assert hung in stranded
    stale = {str(r[0]) for r in query(app_url, "SELECT job FROM running")} & stranded
    assert completed(app_url) < JOBS

    restarted = children("victim-restarted", "work", sys_db_url, app_url, "exec-victim", "0")
    restarted.expect("READY")
    workers = [*survivors, restarted]
    wait_until(lambda: completed(app_url) >= JOBS, f"{JOBS} jobs completed", workers)
    for worker in workers:
        worker.stop()

    assert counts(app_url, "completions") == Counter({job: 1 for job in ALL_JOBS})
    starts = counts(app_url, "starts")
    assert set(starts) == ALL_JOBS
    # Only a job interrupted between its first step's commit and checkpoint starts twice.
    assert {job for job, n in starts.items() if n > 1} <= stranded and max(starts.values()) <= 2
    assert query(app_url, "SELECT COUNT(*) FROM running") == [(0,)]
    rows = job_rows(sys_db_url)
    assert {status for status, _, _ in rows.values()} == {"SUCCESS"}
    # The stranded jobs went back to the queue at the restart and were claimed
    # from it again (a claim stamps started_at).
    assert {job for job, (_, attempts, _) in rows.items() if attempts == 2} == stranded
    marks = ", ".join(["%s"] * len(stranded))
    claimed_again = query(sys_db_url, f"SELECT started_at_epoch_ms FROM {table} "
                                      f"WHERE workflow_uuid IN ({marks})", tuple(stranded))
    assert all(int(r[0]) > killed_ms for r in claimed_again), (claimed_again, killed_ms)
    assert {attempts for job, (_, attempts, _) in rows.items() if job not in stranded} == {1}
    # Jobs stuck in `running` when the victim died stay counted there until re-run,
    # after the restart freed their queue slots; nothing else can exceed the limit.
    peak = int(query(app_url, "SELECT value FROM peak")[0][0])
    assert CONCURRENCY <= peak <= CONCURRENCY + len(stale)


def read_ticks(path: Path) -> List[Tuple[str, str, str]]:
    if not path.exists():
        return []
    return [tuple(line.split()) for line in path.read_text().splitlines() if line]  # type: ignore[misc]


def test_schedule_in_two_processes_fires_once_per_tick(
    sys_db_url: str, tmp_path: Path, children: Callable[..., Child],
) -> None:
    ticks_file = tmp_path / "ticks.txt"
    procs = [children(f"scheduler-{n}", "schedule", sys_db_url, str(ticks_file), f"sched-{n}") for n in range(2)]
    for proc in procs:
        proc.expect("READY")
    both_up = time.time()

    def ticks_since_both_up() -> int:
        return sum(1 for tick, _, _ in read_ticks(ticks_file)
                   if tick > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(both_up + 1)))

    wait_until(lambda: ticks_since_both_up() >= 4, "four ticks ran with both processes up", procs, 30)
    for proc in procs:
        proc.stop()

    lines = read_ticks(ticks_file)
    fired = Counter(tick for tick, _, _ in lines)
    assert fired and max(fired.values()) == 1, fired  # no tick ran twice
    ticks = sorted(fired)
    parsed = [time.mktime(time.strptime(t[:19], "%Y-%m-%dT%H:%M:%S")) for t in ticks]
    assert [b - a for a, b in zip(parsed, parsed[1:])] == [1.0] * (len(parsed) - 1), ticks
    for tick, executor, workflow_id in lines:
        assert workflow_id == f"sched-tick-{tick}"
        assert executor in {"sched-0", "sched-1"}
    table = qualified(sys_db_url, "workflow_status")
    rows = query(sys_db_url, f"SELECT workflow_uuid, status FROM {table} WHERE name = %s", ("tick",))
    recorded = {str(r[0]): str(r[1]) for r in rows}
    assert {workflow_id for _, _, workflow_id in lines} <= set(recorded)
    assert all(recorded[workflow_id] == "SUCCESS" for _, _, workflow_id in lines)
