"""Queues and schedules, on the backend chosen with ``--backend``.

Limits are checked by the jobs themselves: every job reports entering and
leaving to a ``Gauge``, which keeps the peak of how many ran at once, and
waits at a gate the test opens. Jobs are made to pile up behind a limit, so
a limit that leaked would show as one job too many inside the gauge. Before
asserting that nothing more started, a test waits for the queue's worker to
complete two more polls (``wait_polls``): one whole poll then began after the
state was reached, so anything it was going to start has started.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, cast

import pytest

from dbos import (
    DBOS,
    DBOSClient,
    DBOSConfig,
    Queue,
    SetEnqueueOptions,
    SetWorkflowID,
    SetWorkflowTimeout,
    WorkflowHandle,
    WorkflowHandleAsync,
)
from dbos._engine.engine import Engine, peek_engine
from dbos._queues.queue import current_intake
from dbos.error import DBOSAwaitedWorkflowCancelledError, DBOSException, DBOSQueueDeduplicatedError
from dbos._queues.queue import INTERNAL_QUEUE
from dbos._queues.scheduler import Scheduler
from tests.threads import result
from tests.integration.sysdb_sql import recover, status_row, sys_sql, wait_for_launch_recovery
from tests.probe import execute, qualified, query

WAIT_S = 30.0  # an upper bound reached only when a test is already failing
POLL_S = 0.05  # every test queue polls this often


# ----------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------


def engine() -> Engine:
    found = peek_engine()
    assert found is not None, "DBOS is not launched"
    return found


class Gauge:
    """How many jobs run at once, overall and per key, as the jobs report it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.running: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.total = 0
        self.total_peak = 0
        self.order: List[str] = []

    @contextmanager
    def inside(self, label: str, key: str = "") -> Iterator[None]:
        with self._cond:
            self.running[key] += 1
            self.peak[key] = max(self.peak[key], self.running[key])
            self.total += 1
            self.total_peak = max(self.total_peak, self.total)
            self.order.append(label)
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self.running[key] -= 1
                self.total -= 1
                self._cond.notify_all()

    def wait(self, predicate: Callable[[], bool], what: str) -> None:
        with self._cond:
            assert self._cond.wait_for(predicate, WAIT_S), f"timed out waiting until {what}"


class Gates:
    """Named gates that jobs wait at; all open at teardown so no job outlives its test."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gates: Dict[str, threading.Event] = {}
        self._all_open = False

    def __getitem__(self, name: str) -> threading.Event:
        with self._lock:
            gate = self._gates.setdefault(name, threading.Event())
            if self._all_open:
                gate.set()
            return gate

    def pass_(self, name: str = "all") -> None:
        """Called by a job: wait until the test opens ``name``."""
        assert self[name].wait(WAIT_S), f"gate {name} never opened"

    def open(self, name: str = "all") -> None:
        self[name].set()

    def open_all(self) -> None:
        """Open every gate, including those not asked for yet."""
        with self._lock:
            self._all_open = True
            gates = list(self._gates.values())
        for gate in gates:
            gate.set()


@pytest.fixture
def gates() -> Iterator[Gates]:
    made = Gates()
    yield made
    made.open_all()


@pytest.fixture
def launch(config: DBOSConfig, gates: Gates) -> Iterator[Callable[..., None]]:
    """Launch DBOS with the test's system database and extra settings (after
    the test has declared its queues and workflows).

    At teardown nothing new starts (schedules and queue workers stop), every
    gate opens, and every workflow still running here ends before DBOS is
    destroyed: none may outlive the system database it writes to.
    """

    def go(listen: Optional[List[Any]] = None, **settings: Any) -> None:
        DBOS(config=cast(DBOSConfig, {**config, **settings}))
        if listen is not None:
            DBOS.listen_queues(listen)
        DBOS.launch()

    yield go
    running = peek_engine()
    if running is None:
        return
    for thread in threading.enumerate():
        if isinstance(thread, Scheduler):
            thread.stop()
    if current_intake() is not None:
        current_intake().stop()
    gates.open_all()
    deadline = time.monotonic() + WAIT_S
    while (running.active_workflows() or (current_intake() is not None and current_intake().running())) \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    DBOS.destroy(destroy_registry=True)


def wait_polls(queue_name: str, count: int = 2) -> None:
    workers = current_intake()
    assert workers is not None
    worker = workers.worker(queue_name)
    assert worker is not None, f"no worker serves queue {queue_name}"
    assert worker.wait_polls(count, WAIT_S), f"queue {queue_name} stopped polling"


def statuses(handles: List[WorkflowHandle[Any]]) -> Counter[str]:
    ids = [h.workflow_id for h in handles]
    marks = ", ".join("?" for _ in ids)
    rows = sys_sql(f"SELECT status FROM {{status}} WHERE workflow_uuid IN ({marks})", ids)
    return Counter(str(r[0]) for r in rows)


def next_millisecond() -> None:
    """Let the clock pass a millisecond, so the next row's created_at is later."""
    start = int(time.time() * 1000)
    while int(time.time() * 1000) == start:
        time.sleep(0.0005)


def stage_foreign_pending(queue: Queue, func: Callable[..., Any], *args: Any) -> str:
    """A workflow of ``queue`` that another executor (of another version) is running."""
    with SetEnqueueOptions(app_version="another-version"):
        handle = queue.enqueue(func, *args)
    sys_sql("UPDATE {status} SET status = 'PENDING', executor_id = 'another-executor', "
            "started_at_epoch_ms = ? WHERE workflow_uuid = ?", (int(time.time() * 1000), handle.workflow_id))
    return handle.workflow_id


# ----------------------------------------------------------------------
# Enqueueing and handles
# ----------------------------------------------------------------------


def test_enqueued_workflow_runs_in_the_background_and_its_handle_reports_it(
    launch: Callable[..., None],
) -> None:
    queue = Queue("basic", polling_interval_sec=POLL_S)
    ran_on: List[str] = []

    @DBOS.workflow()
    def double(x: int) -> int:
        ran_on.append(threading.current_thread().name)
        return 2 * x

    launch()
    handle = queue.enqueue(double, 21)
    assert isinstance(handle, WorkflowHandle)
    assert result(handle) == 42
    status = handle.get_status()
    assert (status.status, status.queue_name, status.name) == ("SUCCESS", "basic", double.__qualname__)
    assert status.recovery_attempts == 1
    assert status.executor_id == DBOS.executor_id
    assert ran_on[0].startswith("dbos-executor")  # never on the caller's thread

    with SetWorkflowID("chosen-id"):
        chosen = queue.enqueue(double, 1)
    assert chosen.workflow_id == "chosen-id" and result(chosen) == 2
    with SetWorkflowID("chosen-id"):  # the same ID again: the same workflow, not a new run
        again = queue.enqueue(double, 1)
    assert result(again) == 2
    assert len(ran_on) == 2

    by_name = DBOS.enqueue_workflow("basic", double, 5)
    assert result(by_name) == 10
    assert by_name.get_status().queue_name == "basic"

    # A queue nobody declared is legal to enqueue on; the workflow waits there.
    waiting = DBOS.enqueue_workflow("declared-nowhere", double, 7)
    workers = current_intake()
    assert workers is not None and workers.worker("declared-nowhere") is None
    assert status_row(waiting.workflow_id)["status"] == "ENQUEUED"
    assert status_row(waiting.workflow_id)["queue_name"] == "declared-nowhere"
    assert len(ran_on) == 3


def test_queue_declared_twice_or_with_bad_limits_raises() -> None:
    Queue("twice")
    with pytest.raises(DBOSException, match="already been declared"):
        Queue("twice")
    with pytest.raises(ValueError):
        Queue("zero", concurrency=0)
    with pytest.raises(ValueError):
        Queue("wider-than-global", concurrency=2, worker_concurrency=3)
    with pytest.raises(ValueError):
        Queue("bad-limiter", limiter={"limit": 0, "period": 1})
    with pytest.raises(DBOSException):
        SetEnqueueOptions(priority=0)


def test_enqueue_async_returns_an_async_handle(launch: Callable[..., None]) -> None:
    queue = Queue("async-queue", polling_interval_sec=POLL_S)

    @DBOS.workflow()
    async def triple(x: int) -> int:
        await asyncio.sleep(0)
        return 3 * x

    @DBOS.workflow()
    def negate(x: int) -> int:
        return -x

    launch()

    async def main() -> Tuple[int, int, str]:
        handle = await queue.enqueue_async(triple, 5)
        assert isinstance(handle, WorkflowHandleAsync)
        sync_body = await queue.enqueue_async(negate, 4)
        status = await handle.get_status()
        return await handle.get_result(), await sync_body.get_result(), str(status.queue_name)

    assert asyncio.run(main()) == (15, -4, "async-queue")


def test_enqueue_inside_a_workflow_is_checkpointed_and_replay_does_not_enqueue_again(
    launch: Callable[..., None],
) -> None:
    queue = Queue("children", polling_interval_sec=POLL_S)
    child_runs: Counter[int] = Counter()

    @DBOS.workflow()
    def child(x: int) -> int:
        child_runs[x] += 1
        return x + 1

    @DBOS.workflow()
    def parent(x: int) -> str:
        # A fresh ID on every execution: only the checkpoint can make a replay
        # find the child the first execution enqueued.
        with SetWorkflowID(f"child-{uuid.uuid4().hex[:8]}"):
            handle = queue.enqueue(child, x)
        return f"{handle.workflow_id}={handle.get_result()}"

    launch()
    wait_for_launch_recovery()
    with SetWorkflowID("parent-wf"):
        outcome = parent(4)
    child_id = outcome.split("=")[0]
    assert outcome == f"{child_id}=5"
    steps = sys_sql("SELECT function_id, function_name, child_workflow_id FROM {steps} "
                    "WHERE workflow_uuid = ? ORDER BY function_id", ("parent-wf",))
    assert steps == [(1, child.__qualname__, child_id), (2, "DBOS.getResult", child_id)]
    row = status_row(child_id)
    assert (row["queue_name"], row["parent_workflow_id"], row["recovery_attempts"]) == ("children", "parent-wf", 1)

    # Replaying the parent, with and without its recorded result, finds the
    # child it enqueued: nothing is enqueued or run again.
    assert recover("parent-wf") == outcome
    sys_sql("DELETE FROM {steps} WHERE workflow_uuid = ? AND function_id = 2", ("parent-wf",))
    assert recover("parent-wf") == outcome
    assert child_runs == Counter({4: 1})
    children = sys_sql("SELECT workflow_uuid FROM {status} WHERE parent_workflow_id = ?", ("parent-wf",))
    assert children == [(child_id,)]
    assert status_row(child_id)["recovery_attempts"] == 1


# ----------------------------------------------------------------------
# Concurrency limits
# ----------------------------------------------------------------------


def test_global_concurrency_counts_every_executors_running_workflows(
    launch: Callable[..., None], gates: Gates,
) -> None:
    queue = Queue("global", concurrency=2, polling_interval_sec=POLL_S)
    gauge = Gauge()

    @DBOS.workflow()
    def job(i: int) -> int:
        with gauge.inside(str(i)):
            gates.pass_()
        return i

    launch()
    foreign = stage_foreign_pending(queue, job, -1)
    handles = [queue.enqueue(job, i) for i in range(6)]
    # The other executor's workflow holds one of the two slots.
    gauge.wait(lambda: gauge.total >= 1, "one job runs")
    wait_polls("global")
    assert gauge.total == 1 and gauge.total_peak == 1
    assert statuses(handles) == Counter({"PENDING": 1, "ENQUEUED": 5})

    sys_sql("UPDATE {status} SET status = 'SUCCESS' WHERE workflow_uuid = ?", (foreign,))
    gauge.wait(lambda: gauge.total >= 2, "two jobs run")
    wait_polls("global")
    assert gauge.total == 2 and gauge.total_peak == 2
    assert statuses(handles) == Counter({"PENDING": 2, "ENQUEUED": 4})

    gates.open()
    assert [result(h) for h in handles] == list(range(6))
    assert gauge.total_peak == 2


def test_worker_concurrency_limits_this_process_only(launch: Callable[..., None], gates: Gates) -> None:
    queue = Queue("per-worker", worker_concurrency=2, polling_interval_sec=POLL_S)
    gauge = Gauge()

    @DBOS.workflow()
    def job(i: int) -> int:
        with gauge.inside(str(i)):
            gates.pass_()
        return i

    launch()
    # Other executors' work does not count against this worker's limit.
    stage_foreign_pending(queue, job, -1)
    stage_foreign_pending(queue, job, -2)
    handles = [queue.enqueue(job, i) for i in range(6)]
    gauge.wait(lambda: gauge.total >= 2, "two jobs run")
    wait_polls("per-worker")
    assert gauge.total == 2 and gauge.total_peak == 2
    assert statuses(handles) == Counter({"PENDING": 2, "ENQUEUED": 4})
    gates.open()
    assert [result(h) for h in handles] == list(range(6))
    assert gauge.total_peak == 2


def executor_threads() -> List[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("dbos-executor")]


def test_dispatch_budget_bounds_running_workflows_and_threads(
    launch: Callable[..., None], gates: Gates,
) -> None:
    queue = Queue("unlimited", polling_interval_sec=POLL_S)
    gauge = Gauge()

    @DBOS.workflow()
    def job(i: int) -> int:
        with gauge.inside(str(i)):
            gates.pass_()
        return i

    launch(max_executor_threads=4)
    handles = [queue.enqueue(job, i) for i in range(50)]
    gauge.wait(lambda: gauge.total >= 4, "four jobs run")
    wait_polls("unlimited")
    assert gauge.total == 4 and gauge.total_peak == 4
    # Only what can run is claimed: the rest stays in the queue for other processes.
    assert statuses(handles) == Counter({"PENDING": 4, "ENQUEUED": 46})
    assert len(executor_threads()) <= 4 + 2
    gates.open()
    assert [result(h) for h in handles] == list(range(50))
    assert gauge.total_peak == 4
    assert len(executor_threads()) <= 4 + 2


# ----------------------------------------------------------------------
# Order, rate, deduplication, delay, partitions
# ----------------------------------------------------------------------


def test_priorities_run_lowest_first_and_fifo_within_a_priority(
    launch: Callable[..., None], gates: Gates,
) -> None:
    queue = Queue("ranked", concurrency=1, priority_enabled=True, polling_interval_sec=POLL_S)
    gauge = Gauge()

    @DBOS.workflow()
    def blocker() -> None:
        with gauge.inside("blocker"):
            gates.pass_()

    @DBOS.workflow()
    def ranked(label: str) -> str:
        with gauge.inside(label):
            return label

    launch()
    first = queue.enqueue(blocker)
    gauge.wait(lambda: gauge.total >= 1, "the blocker runs")
    handles = []
    for label, priority in [("p5", 5), ("p1-first", 1), ("p3", 3), ("none", None), ("p1-second", 1)]:
        next_millisecond()
        with SetEnqueueOptions(priority=priority):
            handles.append(queue.enqueue(ranked, label))
    assert status_row(handles[3].workflow_id)["priority"] == 0
    gates.open()
    result(first)
    for handle in handles:
        result(handle)
    assert gauge.order == ["blocker", "none", "p1-first", "p1-second", "p3", "p5"]
    assert gauge.total_peak == 1


def windows_over(starts: List[float], period: float) -> int:
    """The most starts in any half-open window [t, t + period)."""
    starts = sorted(starts)
    return max(sum(1 for s in starts if t <= s < t + period) for t in starts)


def test_rate_limiter_allows_at_most_limit_starts_per_period(launch: Callable[..., None]) -> None:
    queue = Queue("rate-limited", limiter={"limit": 3, "period": 2}, polling_interval_sec=POLL_S)
    started: Dict[int, float] = {}

    @DBOS.workflow()
    def quick(i: int) -> int:
        started[i] = time.time()
        return i

    launch()
    handles = [queue.enqueue(quick, i) for i in range(7)]
    assert [result(h) for h in handles] == list(range(7))
    # The claims' own timestamps are exact; the jobs' clocks lag them by the
    # dispatch, so those are checked over a window a little shorter.
    claimed = [status_row(h.workflow_id)["started_at_epoch_ms"] / 1000 for h in handles]
    assert windows_over(claimed, 2.0) == 3
    assert windows_over(list(started.values()), 1.8) <= 3
    ordered = sorted(claimed)
    assert ordered[3] - ordered[0] >= 2.0 and ordered[6] - ordered[3] >= 2.0


def test_deduplication_blocks_while_active_and_frees_on_completion_or_cancel(
    launch: Callable[..., None], gates: Gates,
) -> None:
    queue = Queue("dedup", polling_interval_sec=POLL_S)
    other_queue = Queue("dedup-elsewhere", polling_interval_sec=POLL_S)
    gauge = Gauge()

    @DBOS.workflow()
    def held(label: str) -> str:
        with gauge.inside(label):
            gates.pass_(label)
        return label

    launch()
    with SetEnqueueOptions(deduplication_id="order-7"):
        first = queue.enqueue(held, "first")
        with SetWorkflowID("refused"), pytest.raises(DBOSQueueDeduplicatedError) as refused:
            queue.enqueue(held, "second")
        elsewhere = other_queue.enqueue(held, "elsewhere")  # the ID is per queue
    error = refused.value
    assert (error.workflow_id, error.queue_name, error.deduplication_id) == ("refused", "dedup", "order-7")
    assert sys_sql("SELECT COUNT(*) FROM {status} WHERE workflow_uuid = 'refused'") == [(0,)]
    with SetEnqueueOptions(deduplication_id="order-8"):
        different = queue.enqueue(held, "different")

    gates.open("first")
    assert result(first) == "first"
    with SetEnqueueOptions(deduplication_id="order-7"):
        third = queue.enqueue(held, "third")  # free again once the first finished
    gauge.wait(lambda: "third" in gauge.order, "the third runs")
    DBOS.cancel_workflow(third.workflow_id)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        result(third)
    with SetEnqueueOptions(deduplication_id="order-7"):
        fourth = queue.enqueue(held, "fourth")  # and free once it was cancelled
    for name in ("third", "fourth", "elsewhere", "different"):
        gates.open(name)
    assert [result(h) for h in (fourth, elsewhere, different)] == ["fourth", "elsewhere", "different"]


def test_delayed_workflow_waits_in_delayed_then_runs_no_earlier(launch: Callable[..., None]) -> None:
    queue = Queue("delayed", polling_interval_sec=POLL_S)

    @DBOS.workflow()
    def stamp() -> float:
        return time.time()

    launch()
    options = SetEnqueueOptions(delay_seconds=1.0)
    for _ in range(5):  # the delay must count from the enqueue, not from building the options
        next_millisecond()
    with options:
        enqueued_at = time.time()
        delayed = queue.enqueue(stamp)
    undelayed = queue.enqueue(stamp)
    assert delayed.get_status().status == "DELAYED"
    row = status_row(delayed.workflow_id)
    # The delay counts from the enqueue itself.
    assert row["delay_until_epoch_ms"] == row["created_at"] + 1000
    assert result(undelayed) < row["delay_until_epoch_ms"] / 1000
    started = result(delayed)
    assert started >= row["delay_until_epoch_ms"] / 1000
    assert started >= enqueued_at + 1.0 - 0.001
    assert delayed.get_status().status == "SUCCESS"


def test_partitioned_queue_limits_each_key_separately(launch: Callable[..., None], gates: Gates) -> None:
    queue = Queue("parted", partition_queue=True, concurrency=1, polling_interval_sec=POLL_S)
    plain = Queue("not-parted", polling_interval_sec=POLL_S)
    gauge = Gauge()

    @DBOS.workflow()
    def part_job(key: str, n: int) -> str:
        with gauge.inside(f"{key}{n}", key):
            gates.pass_(f"{key}{n}")
        return f"{key}{n}"

    launch()
    handles = []
    for n in range(3):
        for key in ("a", "b"):
            with SetEnqueueOptions(queue_partition_key=key):
                handles.append(queue.enqueue(part_job, key, n))
    gauge.wait(lambda: gauge.running["a"] >= 1 and gauge.running["b"] >= 1, "one job of each key runs")
    wait_polls("parted")
    assert gauge.total == 2 and gauge.peak == Counter({"a": 1, "b": 1})
    running_a = next(label for label in gauge.order if label.startswith("a"))
    gates.open(running_a)
    gauge.wait(lambda: sum(1 for label in gauge.order if label.startswith("a")) == 2, "the next a runs")
    wait_polls("parted")
    assert gauge.peak == Counter({"a": 1, "b": 1})
    gates.open_all()
    assert sorted(result(h) for h in handles) == ["a0", "a1", "a2", "b0", "b1", "b2"]
    assert gauge.peak == Counter({"a": 1, "b": 1}) and gauge.total_peak == 2
    assert status_row(handles[1].workflow_id)["queue_partition_key"] == "b"

    with pytest.raises(DBOSException, match="partition"):
        queue.enqueue(part_job, "none", 0)
    with SetEnqueueOptions(queue_partition_key="a"), pytest.raises(DBOSException, match="partition"):
        plain.enqueue(part_job, "a", 9)
    with SetEnqueueOptions(queue_partition_key="a", deduplication_id="d"), \
            pytest.raises(DBOSException, match="Deduplication"):
        queue.enqueue(part_job, "a", 9)


# ----------------------------------------------------------------------
# Timeouts, versions, listening, recovery
# ----------------------------------------------------------------------


def test_queued_timeout_starts_at_claim_and_cancels_at_the_deadline(
    launch: Callable[..., None], gates: Gates,
) -> None:
    queue = Queue("timed", concurrency=1, polling_interval_sec=POLL_S)
    gauge = Gauge()
    seen: Dict[str, Any] = {}

    @DBOS.workflow()
    def blocker() -> None:
        with gauge.inside("blocker"):
            gates.pass_()

    @DBOS.workflow()
    def sleeper() -> str:
        seen.update(status_row(str(DBOS.workflow_id)))
        with gauge.inside("sleeper"):
            DBOS.sleep(WAIT_S)
        return "slept"

    launch()
    first = queue.enqueue(blocker)
    gauge.wait(lambda: gauge.total >= 1, "the blocker runs")
    with SetWorkflowTimeout(0.5):
        timed = queue.enqueue(sleeper)
    enqueued_ms = status_row(timed.workflow_id)["created_at"]
    row = status_row(timed.workflow_id)
    assert (row["status"], row["workflow_timeout_ms"], row["workflow_deadline_epoch_ms"]) == ("ENQUEUED", 500, None)
    # Time spent waiting in the queue does not count against the timeout.
    while time.time() * 1000 < enqueued_ms + 700:
        wait_polls("timed", 1)
    assert status_row(timed.workflow_id)["workflow_deadline_epoch_ms"] is None
    gates.open()
    result(first)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        result(timed)
    assert seen["workflow_deadline_epoch_ms"] == seen["started_at_epoch_ms"] + 500
    assert seen["started_at_epoch_ms"] >= enqueued_ms + 700
    final = status_row(timed.workflow_id)
    assert final["status"] == "CANCELLED"
    assert seen["workflow_deadline_epoch_ms"] <= final["completed_at"] < seen["workflow_deadline_epoch_ms"] + 5000


def test_workflow_enqueued_for_another_app_version_is_left_alone(launch: Callable[..., None]) -> None:
    queue = Queue("versions", polling_interval_sec=POLL_S)
    ran: List[str] = []

    @DBOS.workflow()
    def job(label: str) -> str:
        ran.append(label)
        return label

    launch()
    with SetEnqueueOptions(app_version="other"):
        foreign = queue.enqueue(job, "foreign")
    with SetEnqueueOptions(app_version=DBOS.application_version):
        assert result(queue.enqueue(job, "named-mine")) == "named-mine"
    assert result(queue.enqueue(job, "mine")) == "mine"
    wait_polls("versions")
    row = status_row(foreign.workflow_id)
    assert (row["status"], row["application_version"]) == ("ENQUEUED", "other")
    assert ran == ["named-mine", "mine"]


def test_listen_queues_serves_only_the_listed_queues(launch: Callable[..., None]) -> None:
    heard = Queue("heard", polling_interval_sec=POLL_S)
    ignored = Queue("ignored", polling_interval_sec=POLL_S)
    ran: List[str] = []

    @DBOS.workflow()
    def job(label: str) -> str:
        ran.append(label)
        return label

    launch(listen=[heard, "also-heard"])
    with pytest.raises(DBOSException):
        DBOS.listen_queues([ignored])  # only between DBOS() and launch
    skipped = ignored.enqueue(job, "ignored")
    assert result(heard.enqueue(job, "heard")) == "heard"
    workers = current_intake()
    assert workers is not None
    assert workers.worker("ignored") is None
    assert workers.worker("heard") is not None and workers.worker(INTERNAL_QUEUE) is not None
    assert status_row(skipped.workflow_id)["status"] == "ENQUEUED"
    assert "ignored" not in ran


def test_launch_puts_this_executors_pending_queued_work_back_in_its_queue(
    launch: Callable[..., None], sys_db_url: str,
) -> None:
    queue = Queue("recovering", polling_interval_sec=POLL_S)
    body_runs: Counter[int] = Counter()
    step_runs: Counter[int] = Counter()

    @DBOS.step()
    def side(x: int) -> int:
        step_runs[x] += 1
        return x

    @DBOS.workflow()
    def job(x: int) -> int:
        body_runs[x] += 1
        return side(x) + 1

    launch(application_version="v1")
    mine, theirs = queue.enqueue(job, 1), queue.enqueue(job, 2)
    assert (result(mine), result(theirs)) == (2, 3)
    DBOS.destroy()

    # Both look interrupted mid-run: one by this executor, one by another.
    table = qualified(sys_db_url, "workflow_status")
    for workflow_id, executor in ((mine.workflow_id, "local"), (theirs.workflow_id, "elsewhere")):
        execute(sys_db_url, f"UPDATE {table} SET status = 'PENDING', output = NULL, completed_at = NULL, "
                            "executor_id = %s WHERE workflow_uuid = %s", (executor, workflow_id))

    # A launch serving no user queue shows the row back in its queue, unclaimed.
    launch(listen=[], application_version="v1")
    row = status_row(mine.workflow_id)
    assert (row["status"], row["queue_name"], row["recovery_attempts"], row["started_at_epoch_ms"]) == (
        "ENQUEUED", "recovering", 1, None)
    assert status_row(theirs.workflow_id)["status"] == "PENDING"
    DBOS.destroy()

    launch(application_version="v1")
    assert result(DBOS.retrieve_workflow(mine.workflow_id)) == 2
    row = status_row(mine.workflow_id)
    assert (row["status"], row["recovery_attempts"], row["executor_id"]) == ("SUCCESS", 2, "local")
    assert body_runs[1] == 2 and step_runs[1] == 1  # the body ran again; its step replayed
    assert status_row(theirs.workflow_id)["status"] == "PENDING"
    rows = query(sys_db_url, f"SELECT status FROM {table} WHERE workflow_uuid = %s", (theirs.workflow_id,))
    assert rows == [("PENDING",)]


# ----------------------------------------------------------------------
# Database-backed queues
# ----------------------------------------------------------------------


def queue_row(sys_db_url: str, name: str) -> List[Tuple[Any, ...]]:
    sql = (f"SELECT name, concurrency, worker_concurrency, rate_limit_max, polling_interval_sec "
           f"FROM {qualified(sys_db_url, 'queues')} WHERE name = %s")
    return query(sys_db_url, sql, (name,))


def test_registered_queue_rereads_its_limits_and_can_be_listed_and_deleted(
    launch: Callable[..., None], gates: Gates, sys_db_url: str,
) -> None:
    gauge = Gauge()

    @DBOS.workflow()
    def held(i: int) -> int:
        with gauge.inside(str(i)):
            gates.pass_()
        return i

    launch()
    # How a changed limit applies while workers run: test_queue_registry.py.
    queue = DBOS.register_queue("from-db", concurrency=3, polling_interval_sec=POLL_S)
    assert queue_row(sys_db_url, "from-db") == [("from-db", 3, None, None, POLL_S)]
    DBOS.register_queue("from-db", concurrency=4, on_conflict="never_update")
    assert queue_row(sys_db_url, "from-db")[0][1] == 3
    handles = [queue.enqueue(held, i) for i in range(5)]
    gauge.wait(lambda: gauge.total >= 3, "three jobs run")
    gates.open()
    assert [result(h) for h in handles] == list(range(5))
    assert gauge.total_peak == 3

    found = DBOS.retrieve_queue("from-db")
    assert found is not None and found.concurrency == 3 and found.polling_interval_sec == POLL_S
    assert DBOS.retrieve_queue("never-registered") is None
    DBOS.register_queue("from-db-too", worker_concurrency=2, limiter={"limit": 5, "period": 1.5})
    assert [q.name for q in DBOS.list_queues()] == ["from-db", "from-db-too"]
    assert queue_row(sys_db_url, "from-db-too") == [("from-db-too", None, 2, 5, 1.0)]
    with pytest.raises(ValueError):
        DBOS.register_queue("bad", concurrency=1, worker_concurrency=2)

    # Deleted, its worker stops: new work waits until the queue is registered again.
    workers = current_intake()
    assert workers is not None
    worker = workers.worker("from-db")
    assert worker is not None
    DBOS.delete_queue("from-db")
    assert DBOS.retrieve_queue("from-db") is None
    assert [q.name for q in DBOS.list_queues()] == ["from-db-too"]
    worker.join(WAIT_S)
    assert not worker.is_alive() and workers.worker("from-db") is None
    stranded = DBOS.enqueue_workflow("from-db", held, 99)
    assert status_row(stranded.workflow_id)["status"] == "ENQUEUED"
    DBOS.register_queue("from-db", polling_interval_sec=POLL_S)
    assert result(stranded) == 99


def test_registered_queue_from_another_process_is_served(
    launch: Callable[..., None], sys_db_url: str,
) -> None:
    @DBOS.workflow()
    def job(x: int) -> int:
        return x + 100

    launch()
    # Another process registers a queue after this one launched: only its row shows it.
    table = qualified(sys_db_url, "queues")
    execute(sys_db_url, f"INSERT INTO {table} (queue_id, name, polling_interval_sec, created_at, updated_at) "
                        "VALUES ('q-1', 'late-queue', 0.05, 0, 0)")
    assert result(DBOS.enqueue_workflow("late-queue", job, 1)) == 101


def test_queue_declared_after_launch_is_served(launch: Callable[..., None]) -> None:
    @DBOS.workflow()
    def job(x: int) -> int:
        return x * 7

    launch()
    late = Queue("declared-late", polling_interval_sec=POLL_S)
    workers = current_intake()
    assert workers is not None and workers.worker("declared-late") is not None  # served at once
    assert result(late.enqueue(job, 6)) == 42


# ----------------------------------------------------------------------
# Schedules
# ----------------------------------------------------------------------


def test_invalid_cron_is_refused_at_decoration() -> None:
    for cron in ("every minute", "* * * *", "61 * * * * *", ""):
        with pytest.raises(ValueError):
            DBOS.scheduled(cron)


Fired = List[Tuple[datetime, datetime, str]]


def fired_recorder() -> Tuple[Fired, threading.Condition]:
    return [], threading.Condition()


def check_ticks(fired: Fired, name: str) -> None:
    for scheduled_time, actual_time, workflow_id in fired:
        assert scheduled_time.tzinfo is not None and scheduled_time.utcoffset() == timedelta(0)
        assert scheduled_time.microsecond == 0
        assert scheduled_time <= actual_time < scheduled_time + timedelta(seconds=5)
        assert workflow_id == f"sched-{name}-{scheduled_time.isoformat()}"
    ticks = sorted(f[0] for f in fired)
    assert all(b - a == timedelta(seconds=1) for a, b in zip(ticks, ticks[1:])), ticks


def test_scheduled_workflow_fires_every_tick_with_its_times(launch: Callable[..., None]) -> None:
    fired, cond = fired_recorder()

    @DBOS.scheduled("* * * * * *")
    @DBOS.workflow()
    def every_second(scheduled_time: datetime, actual_time: datetime) -> None:
        with cond:
            fired.append((scheduled_time, actual_time, str(DBOS.workflow_id)))
            cond.notify_all()

    launch()
    with cond:
        assert cond.wait_for(lambda: len(fired) >= 2, WAIT_S)
        seen = list(fired[:2])
    check_ticks(seen, every_second.__qualname__)
    row = status_row(seen[0][2])
    assert (row["queue_name"], row["status"]) == (INTERNAL_QUEUE, "SUCCESS")


def test_scheduled_step_runs_as_a_one_step_workflow_each_tick(launch: Callable[..., None]) -> None:
    # DBOS's cron starter app schedules a step directly, with no workflow around it.
    fired, cond = fired_recorder()

    @DBOS.scheduled("* * * * * *")
    @DBOS.step()
    def sweep(scheduled_time: datetime, actual_time: datetime) -> None:
        with cond:
            fired.append((scheduled_time, actual_time, str(DBOS.workflow_id)))
            cond.notify_all()

    launch()
    with cond:
        assert cond.wait_for(lambda: len(fired) >= 1, WAIT_S)
        seen = list(fired[:1])
    check_ticks(seen, sweep.__qualname__)
    handle = DBOS.retrieve_workflow(seen[0][2])
    assert handle.get_result() is None
    assert handle.get_status().name == f"<temp>.{sweep.__qualname__}"
    assert [step["function_name"] for step in DBOS.list_workflow_steps(seen[0][2])] == [sweep.__qualname__]


def test_schedule_declared_after_launch_starts_firing(launch: Callable[..., None]) -> None:
    fired, cond = fired_recorder()
    launch()

    @DBOS.scheduled("* * * * * *")
    @DBOS.workflow()
    def late(scheduled_time: datetime, actual_time: datetime) -> None:
        with cond:
            fired.append((scheduled_time, actual_time, str(DBOS.workflow_id)))
            cond.notify_all()

    with cond:
        assert cond.wait_for(lambda: len(fired) >= 1, WAIT_S)
        seen = list(fired[:1])
    check_ticks(seen, late.__qualname__)


def test_workflow_enqueued_for_no_version_runs_on_the_latest_only(launch: Callable[..., None]) -> None:
    queue = Queue("unversioned", polling_interval_sec=POLL_S)

    @DBOS.workflow()
    def job() -> str:
        return "ran"

    launch()
    sysdb = engine().sysdb
    sysdb.register_application_version("newer", "test-app")
    sysdb.set_latest_application_version("newer")
    client = DBOSClient(system_database_url=sysdb.url.render())
    try:  # a client enqueues for no particular version unless told
        handle = client.enqueue({"workflow_name": job.dbos_function_name, "queue_name": queue.name,
                                 "workflow_id": "unpinned"})
        assert status_row("unpinned")["application_version"] is None
        wait_polls("unversioned", 2)
        assert status_row("unpinned")["status"] == "ENQUEUED"  # this process is not the latest
        DBOS.set_latest_application_version(DBOS.application_version)
        assert result(handle) == "ran"
    finally:
        client.destroy()
