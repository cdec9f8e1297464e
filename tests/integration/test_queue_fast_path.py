"""A job enqueued in the process that serves its queue skips the queue when
nothing waits there and no limit is shared: its row is written already
claimed (PENDING, this executor's, started now) and it starts at once. Jobs
that must wait keep their turn; other processes hear of an enqueue at once
on PostgreSQL.

Reuses the queue tests' fixtures (``launch``, ``gates``) and helpers.
"""

from __future__ import annotations

import time
from typing import Callable, List, TypeVar

import pytest

from dbos import DBOS, DBOSClient, Queue, SetEnqueueOptions
from tests.integration.sysdb_sql import status_row
from dbos._queues.queue import current_intake
from tests.integration.test_queues import WAIT_S, Gates, Gauge, engine, gates, launch, wait_polls  # noqa: F401
from tests.threads import result

T = TypeVar("T")
IDLE_POLL_S = 120.0  # longer than any wait here: a start cannot be a poll's doing


def polled_once(queue_name: str) -> None:
    """Wait until the queue's worker here has completed its first poll."""
    workers = current_intake()
    worker = workers.worker(queue_name) if workers is not None else None
    assert worker is not None, f"no worker serves queue {queue_name}"
    with worker.polled:
        assert worker.polled.wait_for(lambda: worker.polls >= 1, WAIT_S), f"queue {queue_name} never polled"


def enqueued_after_a_tick(enqueue: Callable[[], T]) -> T:
    """Enqueue in a later millisecond: jobs of one priority are ordered by
    creation time, and those created in the same millisecond in no order."""
    start = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 == start:
        pass
    return enqueue()


def test_a_job_enqueued_on_an_idle_queue_is_written_claimed_and_starts_at_once(
    launch: Callable[..., None], gates: Gates,
) -> None:
    queue = Queue("idle", polling_interval_sec=IDLE_POLL_S)
    gauge = Gauge()

    @DBOS.workflow()
    def job(i: int) -> int:
        with gauge.inside(str(i)):
            gates.pass_()
        return i

    launch()
    polled_once("idle")  # the worker has looked once: the queue is empty
    handle = queue.enqueue(job, 1)
    row = status_row(handle.workflow_id)
    assert row["status"] == "PENDING" and row["executor_id"] == DBOS.executor_id
    assert row["queue_name"] == "idle" and row["recovery_attempts"] == 1
    assert row["started_at_epoch_ms"] == row["created_at"]
    gauge.wait(lambda: gauge.total == 1, "the job runs")
    gates.open()
    assert result(handle) == 1
    status = handle.get_status()
    assert (status.status, status.recovery_attempts, status.queue_name) == ("SUCCESS", 1, "idle")


def test_jobs_ending_on_a_drained_queue_do_not_wake_its_worker(launch: Callable[..., None]) -> None:
    """A woken worker's claim in flight would turn the next enqueue away from
    the fast path; a drained queue has nothing for it to claim."""
    queue = Queue("quiet", polling_interval_sec=IDLE_POLL_S)

    @DBOS.workflow()
    def job(i: int) -> int:
        return i

    launch()
    polled_once("quiet")
    workers = current_intake()
    worker = workers.worker("quiet") if workers is not None else None
    assert worker is not None
    polls = worker.polls
    handles = [queue.enqueue(job, i) for i in range(20)]
    assert [result(h) for h in handles] == list(range(20))
    assert all(status_row(h.workflow_id)["started_at_epoch_ms"] == status_row(h.workflow_id)["created_at"]
               for h in handles)
    assert worker.polls == polls, "a job's end woke the drained queue's worker"


def test_jobs_behind_a_full_worker_wait_in_order_and_the_drained_queue_is_skipped_again(
    launch: Callable[..., None], gates: Gates,
) -> None:
    queue = Queue("one-at-a-time", worker_concurrency=1, polling_interval_sec=0.05)
    gauge = Gauge()

    @DBOS.workflow()
    def job(label: str) -> str:
        with gauge.inside(label):
            gates.pass_(label)
        return label

    launch()
    polled_once("one-at-a-time")
    first = queue.enqueue(job, "a")
    assert status_row(first.workflow_id)["status"] == "PENDING"
    gauge.wait(lambda: gauge.total == 1, "the first job runs")
    waiting = [enqueued_after_a_tick(lambda: queue.enqueue(job, label)) for label in "bcd"]
    assert [status_row(h.workflow_id)["status"] for h in waiting] == ["ENQUEUED"] * 3
    for label in "abcd":
        gates.open(label)
    assert [result(h) for h in [first, *waiting]] == list("abcd")
    assert gauge.order == list("abcd") and gauge.total_peak == 1
    wait_polls("one-at-a-time", 2)  # a poll found the queue empty again
    again = queue.enqueue(job, "e")
    assert status_row(again.workflow_id)["status"] == "PENDING"
    gates.open("e")
    assert result(again) == "e"


def test_delayed_partitioned_or_shared_limit_jobs_take_the_queue(
    launch: Callable[..., None], gates: Gates,
) -> None:
    shared = Queue("shared-limit", concurrency=5, polling_interval_sec=IDLE_POLL_S)
    partitioned = Queue("by-key", partition_queue=True, polling_interval_sec=IDLE_POLL_S)
    plain = Queue("plain", polling_interval_sec=IDLE_POLL_S)
    seen: List[str] = []

    @DBOS.workflow()
    def job(label: str) -> str:
        seen.append(label)
        return label

    launch()
    for name in ("shared-limit", "by-key", "plain"):
        polled_once(name)
    # Their rows are written ENQUEUED: the worker claims them (woken at once).
    handles = [shared.enqueue(job, "shared")]
    with SetEnqueueOptions(queue_partition_key="k"):
        handles.append(partitioned.enqueue(job, "keyed"))
    with SetEnqueueOptions(delay_seconds=3600):
        delayed = plain.enqueue(job, "later")
    assert [result(h) for h in handles] == ["shared", "keyed"]
    assert all(status_row(h.workflow_id)["recovery_attempts"] == 1 for h in handles)
    assert status_row(delayed.workflow_id)["status"] == "DELAYED" and "later" not in seen


def test_an_enqueue_by_another_process_wakes_the_worker_at_once_on_postgres(
    launch: Callable[..., None], backend: str,
) -> None:
    if backend != "postgres":
        pytest.skip("other processes hear of an enqueue through PostgreSQL's NOTIFY")
    queue = Queue("woken", polling_interval_sec=IDLE_POLL_S)

    @DBOS.workflow()
    def job(x: int) -> int:
        return x + 1

    launch()
    polled_once("woken")
    # The client writes with its own connections, as another process would.
    client = DBOSClient(system_database_url=engine().sysdb.url.render())
    try:
        handle = client.enqueue({"workflow_name": job.dbos_function_name, "queue_name": queue.name}, 41)
        assert result(handle) == 42  # within the test's wait, far shorter than the polling interval
    finally:
        client.destroy()
