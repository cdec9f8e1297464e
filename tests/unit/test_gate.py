"""The gate that lets recovered workflows into the pool a few at a time."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, List

import pytest

from dbos.error import DBOSException
from dbos._engine.gate import Gate

WAIT_S = 30.0  # reached only when a test is already failing


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=16)
    yield executor
    executor.shutdown(wait=False)


class Log:
    def __init__(self) -> None:
        self.entries: List[str] = []
        self._lock = threading.Lock()
        self.changed = threading.Condition(self._lock)

    def add(self, entry: str) -> None:
        with self.changed:
            self.entries.append(entry)
            self.changed.notify_all()

    def wait_for(self, *entries: str) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: set(entries) <= set(self.entries), WAIT_S)


def blocking(log: Log, name: str, release: threading.Event) -> Callable[[], str]:
    def call() -> str:
        log.add(f"start {name}")
        assert release.wait(WAIT_S)
        log.add(f"end {name}")
        return name
    return call


def test_at_most_limit_run_at_once(pool: ThreadPoolExecutor) -> None:
    log, releases = Log(), [threading.Event() for _ in range(3)]
    calls = [blocking(log, str(n), releases[n]) for n in range(3)]
    futures = Gate(pool, limit=2, patience_s=WAIT_S).submit_all(calls)
    log.wait_for("start 0", "start 1")
    releases[0].set()
    log.wait_for("start 2")
    releases[1].set()
    releases[2].set()
    assert [f.result(WAIT_S) for f in futures] == ["0", "1", "2"]
    # The third started only once the first had made room.
    assert log.entries.index("start 2") > log.entries.index("end 0")


def test_a_full_gate_still_admits_after_its_patience(pool: ThreadPoolExecutor) -> None:
    # The first waits for the second, which is behind it: a deadlock if the
    # gate waited for a free slot forever.
    done = threading.Event()
    futures = Gate(pool, limit=1, patience_s=0.01).submit_all([
        lambda: done.wait(WAIT_S),
        done.set,
    ])
    assert futures[0].result(WAIT_S) is True
    assert futures[1].result(WAIT_S) is None


def test_a_failing_call_fails_its_own_future_only(pool: ThreadPoolExecutor) -> None:
    def boom() -> None:
        raise ValueError("boom")

    futures = Gate(pool, limit=1).submit_all([boom, lambda: "fine"])
    with pytest.raises(ValueError, match="boom"):
        futures[0].result(WAIT_S)
    assert futures[1].result(WAIT_S) == "fine"


def test_calls_not_started_at_shutdown_fail_with_an_explanation() -> None:
    executor = ThreadPoolExecutor(max_workers=1)
    executor.shutdown()
    futures = Gate(executor, limit=1).submit_all([lambda: 1, lambda: 2])
    for future in futures:
        with pytest.raises(DBOSException, match="PENDING and is recovered at the next launch"):
            future.result(WAIT_S)


def test_a_backlog_runs_in_at_most_limit_lanes(pool: ThreadPoolExecutor) -> None:
    # Each lane takes the next call itself: 40 calls run on 3 pool threads.
    threads: List[int] = []
    calls = [lambda: threads.append(threading.get_ident()) for _ in range(40)]
    futures = Gate(pool, limit=3, patience_s=WAIT_S).submit_all(calls)
    for future in futures:
        future.result(WAIT_S)
    assert len(threads) == 40
    assert len(set(threads)) <= 3


def test_batches_submitted_apart_share_the_limit(pool: ThreadPoolExecutor) -> None:
    log, releases = Log(), [threading.Event() for _ in range(3)]
    gate = Gate(pool, limit=2, patience_s=WAIT_S)
    first = gate.submit_all([blocking(log, str(n), releases[n]) for n in range(2)])
    log.wait_for("start 0", "start 1")
    second = gate.submit_all([blocking(log, "2", releases[2])])
    releases[1].set()
    log.wait_for("start 2")
    releases[0].set()
    releases[2].set()
    assert [f.result(WAIT_S) for f in first + second] == ["0", "1", "2"]
    assert log.entries.index("start 2") > log.entries.index("end 1")


def test_calls_still_waiting_when_shutdown_begins_fail_with_an_explanation(pool: ThreadPoolExecutor) -> None:
    open_ = threading.Event()
    open_.set()
    futures = Gate(pool, limit=1, patience_s=WAIT_S, admit=open_.is_set).submit_all([open_.clear, lambda: 2])
    assert futures[0].result(WAIT_S) is None
    with pytest.raises(DBOSException, match="PENDING and is recovered at the next launch"):
        futures[1].result(WAIT_S)
