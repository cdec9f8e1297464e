"""PostgreSQL cut for several seconds in the middle of running work: long
workflows, a stream of new ones and a queue all finish in this process,
nothing is run twice, and the log tells the outage in two lines."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Tuple

import pytest

from dbos import DBOS, DBOSConfig, Queue
from tests.chaos.proxy import FaultProxy
from tests.chaos.support import OUTAGE_END, OUTAGE_WARNING, Records, dbos_log, proxy, require_postgres, through

pytestmark = pytest.mark.chaos
__all__ = ["dbos_log", "proxy"]  # fixtures, imported for pytest

LONG_WORKFLOWS = 8
LONG_STEPS = 8
JOBS = 30
OUTAGE_SEC = 6.0


class Ledger:
    """What the bodies did, counted in memory."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.steps: Counter[Tuple[str, int]] = Counter()
        self.running_jobs = 0
        self.most_jobs = 0
        self.step_ran = threading.Semaphore(0)

    def step(self, key: Tuple[str, int]) -> None:
        with self.lock:
            self.steps[key] += 1
        self.step_ran.release()


class Workflows(NamedTuple):
    long: Callable[[str], int]
    short: Callable[[str], str]
    job: Callable[[str], str]
    queue: Queue


@pytest.fixture
def launched(backend: str, fresh_postgres_url: str, proxy: FaultProxy) -> Iterator[Tuple[Ledger, Workflows]]:
    require_postgres(backend)
    ledger = Ledger()
    config = DBOSConfig(name="chaos-cut", system_database_url=through(fresh_postgres_url, proxy))
    DBOS(config=config)
    workflows = define_workflows(ledger, Queue("chaos-jobs", concurrency=5))
    DBOS.launch()
    yield ledger, workflows
    proxy.accept()
    DBOS.destroy(destroy_registry=True)


def define_workflows(ledger: Ledger, queue: Queue) -> Workflows:
    stop = threading.Event()  # never set: ``wait`` is a pause that is no sleep of the test's

    @DBOS.step()
    def work(tag: str, index: int) -> int:
        ledger.step((tag, index))
        stop.wait(0.25)
        return index * index

    @DBOS.workflow()
    def long_workflow(tag: str) -> int:
        return sum(work(tag, i) for i in range(LONG_STEPS))

    @DBOS.workflow()
    def short_workflow(tag: str) -> str:
        return f"{tag}:{work(tag, 0)}"

    @DBOS.workflow()
    def job(tag: str) -> str:
        with ledger.lock:
            ledger.running_jobs += 1
            ledger.most_jobs = max(ledger.most_jobs, ledger.running_jobs)
        try:
            return f"{tag}:{work(tag, 1) + work(tag, 2)}"
        finally:
            with ledger.lock:
                ledger.running_jobs -= 1

    return Workflows(long_workflow, short_workflow, job, queue)


def stream_of_starts(short: Callable[[str], str], halt: threading.Event, results: Dict[str, Any]) -> None:
    """New workflows, one after another, until ``halt``; each result or error kept."""
    count = 0
    while not halt.is_set():
        tag = f"short-{count}"
        try:
            results[tag] = short(tag)
        except Exception as exc:
            results[tag] = exc
        count += 1
        halt.wait(0.1)


def test_a_postgres_cut_is_a_pause(launched: Tuple[Ledger, Workflows], proxy: FaultProxy,
                                   dbos_log: Records) -> None:
    ledger, flows = launched
    long_handles = [DBOS.start_workflow(flows.long, f"long-{i}") for i in range(LONG_WORKFLOWS)]
    jobs = [flows.queue.enqueue(flows.job, f"job-{i}") for i in range(JOBS)]
    halt, stream = threading.Event(), {}  # type: Tuple[threading.Event, Dict[str, Any]]
    streamer = threading.Thread(target=stream_of_starts, args=(flows.short, halt, stream))
    streamer.start()
    for _ in range(LONG_WORKFLOWS * 2):  # the long ones are under way
        assert ledger.step_ran.acquire(timeout=30)
    proxy.refuse()
    proxy.cut()
    assert proxy.wait_refused(3, timeout=30)
    threading.Event().wait(OUTAGE_SEC - 1)  # the outage itself
    proxy.accept()
    assert [h.get_result() for h in long_handles] == [sum(i * i for i in range(LONG_STEPS))] * LONG_WORKFLOWS
    assert [h.get_result() for h in jobs] == [f"job-{i}:5" for i in range(JOBS)]
    halt.set()
    streamer.join(timeout=60)
    failures: List[Any] = [v for v in stream.values() if isinstance(v, Exception)]
    assert failures == [] and all(v == f"{k}:0" for k, v in stream.items())
    assert ledger.steps and set(ledger.steps.values()) == {1}  # no checkpointed step ran twice
    assert ledger.most_jobs <= 5
    assert [w.status for w in DBOS.list_workflows(queue_name="chaos-jobs")] == ["SUCCESS"] * JOBS
    assert dbos_log.ended.wait(timeout=30)
    assert len(dbos_log.saying(OUTAGE_WARNING)) == 1
    assert len(dbos_log.saying(OUTAGE_END)) == 1
    assert dbos_log.tracebacks() == []
