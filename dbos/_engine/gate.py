"""A gate that lets a backlog of workflows into the pool a few at a time.

Recovery can find thousands of PENDING workflows at once. Started together
they cost a thread each and, on SQLite, crowd the write lock, where a writer
that finds it taken sleeps in the busy handler: the backlog finishes later
than if it ran a few at a time. Through the gate at most ``limit`` run at once.

A workflow may wait for another still behind the gate (a parent for its
child, a recv for a message). So the gate never waits long for a free slot:
after ``patience_s`` it lets the next one in anyway. A backlog of such
workflows drains more slowly, but it always drains.
"""

from __future__ import annotations

import threading
from concurrent.futures import Executor, Future
from functools import partial
from typing import Any, Callable, List, Sequence

from ..error import DBOSException

Call = Callable[[], Any]


class Gate:
    def __init__(self, pool: Executor, limit: int, patience_s: float = 0.1,
                 admit: Callable[[], bool] = lambda: True) -> None:
        self._pool = pool
        self._admit = admit  # False once shutdown began: the rest stay PENDING
        self._slots = threading.Semaphore(max(1, limit))
        self._patience_s = patience_s

    def submit_all(self, calls: Sequence[Call], name: str = "dbos-gate") -> List["Future[Any]"]:
        """A future per call, at once; the calls start as the gate admits them."""
        futures: List["Future[Any]"] = [Future() for _ in calls]
        if calls:
            threading.Thread(target=self._feed, args=(list(calls), futures),
                             name=name, daemon=True).start()
        return futures

    def _feed(self, calls: List[Call], futures: List["Future[Any]"]) -> None:
        for index, (call, future) in enumerate(zip(calls, futures)):
            held = self._slots.acquire(timeout=self._patience_s)
            if not self._admit():
                if held:
                    self._slots.release()
                self._abandon(futures[index:])
                return
            try:
                inner = self._pool.submit(call)
            except RuntimeError:  # the pool was shut down: the rest stay PENDING
                self._abandon(futures[index:])
                return
            inner.add_done_callback(partial(self._finish, out=future, held=held))

    def _finish(self, done: "Future[Any]", *, out: "Future[Any]", held: bool) -> None:
        if held:
            self._slots.release()
        error = done.exception()
        if error is not None:
            out.set_exception(error)
        else:
            out.set_result(done.result())

    @staticmethod
    def _abandon(futures: List["Future[Any]"]) -> None:
        for future in futures:
            future.set_exception(DBOSException(
                "DBOS shut down before this recovered workflow could start; "
                "it stays PENDING and is recovered at the next launch"))
