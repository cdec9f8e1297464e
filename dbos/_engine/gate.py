"""A gate that lets a backlog of workflows into the pool a few at a time.

Recovery can find thousands of PENDING workflows at once. Started together
they cost a thread each and, on SQLite, crowd the write lock, where a writer
that finds it taken sleeps in the busy handler: the backlog finishes later
than if it ran a few at a time. Through the gate at most ``limit`` run at once.

They run in lanes: ``limit`` pool threads, each taking the next waiting call
as soon as its last one returns. No thread hands a call to another between
two calls (a feeder thread would wake once per call, and on a busy machine
each wake-up waits for a time slice), so a backlog of short workflows costs
no more than its bodies.

A workflow may wait for another still behind the gate (a parent for its
child, a recv for a message). So the gate never waits long for a free lane:
when no call has returned for ``patience_s``, a watcher lets the next one in
anyway, on a thread of its own. A backlog of such workflows drains more
slowly, but it always drains.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Executor, Future
from typing import Any, Callable, Deque, List, Optional, Sequence, Tuple

from ..error import DBOSException

Call = Callable[[], Any]
Waiting = Tuple[Call, "Future[Any]"]


class Gate:
    def __init__(self, pool: Executor, limit: int, patience_s: float = 0.1,
                 admit: Callable[[], bool] = lambda: True) -> None:
        self._pool = pool
        self._admit = admit  # False once shutdown began: the rest stay PENDING
        self._limit = max(1, limit)
        self._patience_s = patience_s
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)  # the watcher's: nothing waits any more
        self._waiting: Deque[Waiting] = deque()
        self._lanes = 0
        self._returned = 0  # calls that returned: the watcher's sign of progress
        self._watched = False

    def submit_all(self, calls: Sequence[Call], name: str = "dbos-gate") -> List["Future[Any]"]:
        """A future per call, at once; the calls start as the gate admits them."""
        futures: List["Future[Any]"] = [Future() for _ in calls]
        with self._lock:
            self._waiting.extend(zip(calls, futures))
            opening = min(self._limit - self._lanes, len(self._waiting))
            self._lanes += opening
            watch = bool(calls) and not self._watched
            self._watched = self._watched or watch
        for _ in range(opening):
            self._start(self._lane, lane=True)
        if watch:
            threading.Thread(target=self._watch, name=name, daemon=True).start()
        return futures

    def _start(self, work: Callable[[], None], lane: bool) -> None:
        try:
            self._pool.submit(work)
        except RuntimeError:  # the pool was shut down: the rest stay PENDING
            with self._lock:
                self._lanes -= int(lane)
            self._abandon()

    def _lane(self) -> None:
        """Run waiting calls one after another until none is left (or shutdown began)."""
        while self._run_next(lane=True):
            pass

    def _one(self) -> None:
        """One call let in past a full gate, on a pool thread of its own."""
        self._run_next(lane=False)

    def _run_next(self, lane: bool) -> bool:
        """Run the next waiting call; False when there was none to run."""
        taken = self._take(lane)
        if taken is None:
            return False
        _run(*taken)
        with self._lock:
            self._returned += 1
        return True

    def _take(self, lane: bool) -> Optional[Waiting]:
        """The next waiting call; None (closing the lane) when there is none to run."""
        admitted = self._admit()
        with self._lock:
            if self._waiting and admitted:
                return self._waiting.popleft()
            self._lanes -= int(lane)
            self._drained.notify_all()
        if not admitted:
            self._abandon()
        return None

    def _watch(self) -> None:
        """While calls wait: if none returned for ``patience_s``, let the next one in."""
        seen = -1
        while self._still_waiting():
            if not self._admit():  # lanes that never ran (a pool shut down) abandon nothing
                self._abandon()
            elif self._returned == seen:
                self._start(self._one, lane=False)
            seen = self._returned
            with self._lock:
                if self._waiting:
                    self._drained.wait(self._patience_s)

    def _still_waiting(self) -> bool:
        """Whether calls wait; if not, the watcher stops (the next ``submit_all`` starts another)."""
        with self._lock:
            self._watched = bool(self._waiting)
            return self._watched

    def _abandon(self) -> None:
        with self._lock:
            left, self._waiting = list(self._waiting), deque()
            self._drained.notify_all()
        for _, future in left:
            future.set_exception(DBOSException(
                "DBOS shut down before this recovered workflow could start; "
                "it stays PENDING and is recovered at the next launch"))


def _run(call: Call, future: "Future[Any]") -> None:
    """Run ``call`` into ``future``: its result, or the exception it raised."""
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = call()
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)
