"""The running engine: system database, serializer, threads and wake-ups.

``DBOS.launch()`` builds one ``Engine``; decorated functions reach it through
``get_engine``. Nothing here knows SQL: the engine holds the system database
as a ``Storage``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Coroutine, List, Optional, Set, TypeVar

from .._serialization import Codec
from .._sysdb import Storage
from .._sysdb.notifications import CANCEL_PREFIX, LISTENING, cancel_key
from ..error import DBOSException, DBOSNotLaunchedError, DBOSWorkflowCancelledError
from .deadline import DeadlineTimer
from .waiters import Waiters

logger = logging.getLogger("dbos")

T = TypeVar("T")

# With a listener, how often (at most) a waiter re-checks on its own, in case
# a notification was lost.
LISTENER_RECHECK_S = 5.0


class BackgroundLoop:
    """An asyncio loop on its own thread, for async workflows started from sync code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="dbos-event-loop", daemon=True
        )
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> "Future[T]":
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        def cancel_all() -> None:
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            self.loop.stop()

        self.loop.call_soon_threadsafe(cancel_all)
        self._thread.join(timeout=10)


@dataclass
class Identity:
    app_name: str
    app_version: str
    executor_id: str
    app_id: str = ""  # DBOS__APPID, recorded on each workflow as DBOS Transact does


class Engine:
    def __init__(
        self,
        sysdb: Storage,
        codec: Codec,
        identity: Identity,
        max_threads: Optional[int] = None,
        datasource: Any = None,
        owns_datasource: bool = True,
        poll_interval: float = 1.0,
        listen: bool = True, patching: bool = False,
    ) -> None:
        self.sysdb = sysdb
        self.codec = codec
        self.identity = identity
        self.datasource = datasource
        self.patching = patching  # enable_patching: DBOS.patch() may be called
        self._owns_datasource = owns_datasource
        self.pool = ThreadPoolExecutor(
            max_workers=max_threads or sys.maxsize, thread_name_prefix="dbos-executor-"
        )
        self.background = BackgroundLoop()
        self.waiters = Waiters()
        self._active: Set[str] = set()
        self._active_lock = threading.Lock()
        self._cancelled: Set[str] = set()
        self.deadlines = DeadlineTimer(lambda workflow_id: self.cancel([workflow_id]))
        self.listener = sysdb.listen(self.on_notification) if listen else None
        # Without a reliable listener waiters poll. With one they still
        # re-check now and then, never more often than polling would.
        self.poll_interval = max(LISTENER_RECHECK_S, poll_interval) if self.hears_all() else poll_interval
        self._init_lifecycle()

    def _init_lifecycle(self) -> None:
        # What stops new work from starting here (queue workers, schedulers),
        # called last registered first.
        self.on_close: List[Callable[[], None]] = []
        # What starts workflows of its own accord (schedulers): stopped by
        # deactivation, which leaves the rest running, and at close.
        self.pollers: List[Callable[[], None]] = []
        self.deactivated = False
        # Set when DBOS shuts down: a body still running records no outcome (workflow.py).
        self.closed = False
        self.intake_stopped = False  # shutting down: no recovered or queued work starts any more
        # Strong references: the loop itself only keeps weak ones to tasks.
        self.tasks: Set["asyncio.Future[Any]"] = set()

    async def in_pool(self, func: Callable[..., T], *args: Any) -> T:
        """Run blocking ``func`` on DBOS's pool (not the loop's small default
        executor), with the caller's context."""
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, func, *args)
        return await loop.run_in_executor(self.pool, call)

    def keep(self, task: "asyncio.Future[Any]") -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def track(self, workflow_id: str, deadline_ms: Optional[int] = None) -> None:
        """A workflow body starts running here; its deadline, if any, is armed."""
        with self._active_lock:
            self._active.add(workflow_id)
        if deadline_ms is not None:
            self.deadlines.arm(workflow_id, int(deadline_ms))

    def cancel(self, workflow_ids: List[str]) -> List[str]:
        """Cancel workflows wherever they run; those running here notice at once.
        Returns those cancelled (the others had finished)."""
        cancelled = self.sysdb.cancel_workflows(workflow_ids)
        for workflow_id in cancelled:
            self.mark_cancelled(workflow_id)
        return cancelled

    def check_cancelled_here(self, workflow_id: str) -> None:
        """Raise if this process knows the workflow was cancelled (no database read)."""
        # Read without the lock: a set's membership test is atomic, and every
        # step asks, from every thread.
        if workflow_id in self._cancelled:
            raise DBOSWorkflowCancelledError(f"Workflow {workflow_id} was cancelled")

    def untrack(self, workflow_id: str) -> None:
        with self._active_lock:
            self._active.discard(workflow_id)
            self._cancelled.discard(workflow_id)

    def on_notification(self, key: str) -> None:
        """A key another process notified (from the listener)."""
        if key == LISTENING:
            self.catch_up()
            return
        if key.startswith(CANCEL_PREFIX):
            self.mark_cancelled(key[len(CANCEL_PREFIX):])
        self.waiters.wake(key)

    def catch_up(self) -> None:
        """LISTEN is (again) in place: find what was missed while it was not."""
        try:
            active = self.active_workflows()
            statuses = self.sysdb.workflow_statuses(active) if active else {}
        except Exception:
            logger.warning("Could not re-read workflow statuses after reconnecting", exc_info=True)
            statuses = {}
        for workflow_id, status in statuses.items():
            if status == "CANCELLED":
                self.mark_cancelled(workflow_id)
        self.waiters.wake_all()

    def mark_cancelled(self, workflow_id: str) -> None:
        with self._active_lock:
            if workflow_id in self._active:
                self._cancelled.add(workflow_id)
        self.waiters.wake(cancel_key(workflow_id))
        self.waiters.wake(workflow_id)

    def forget_cancelled(self, workflow_ids: List[str]) -> None:
        """Resumed workflows run again here without the old cancellation mark."""
        with self._active_lock:
            self._cancelled.difference_update(workflow_ids)

    def is_cancelled(self, workflow_id: str) -> bool:
        """Whether a workflow running here was cancelled (a read where nothing tells us)."""
        with self._active_lock:
            if workflow_id in self._cancelled:
                return True
        if self.hears_all():
            return False
        outcome = self.sysdb.workflow_outcome(workflow_id)
        return outcome is not None and outcome.status == "CANCELLED"

    def hears_all(self) -> bool:
        """Whether every write of another process reaches this one's waiters."""
        return self.listener is not None and self.listener.reliable

    def active_workflows(self) -> List[str]:
        with self._active_lock:
            return sorted(self._active)

    def deactivate(self) -> None:
        """Stop the schedulers, as DBOS Transact's ``/deactivate`` does: no new
        workflow starts here of its own accord, while queue workers and
        recovery go on, so the workflows already started (and the children
        they enqueue) finish."""
        self.deactivated = True
        while self.pollers:
            self.pollers.pop()()

    def stop_intake(self) -> None:
        """Stop schedulers, queue workers and recovery from starting more workflows."""
        self.intake_stopped = True
        self.deactivate()
        while self.on_close:
            self.on_close.pop()()

    def close(self) -> None:
        self.closed = True
        self.stop_intake()
        self.deadlines.stop()
        if self.listener is not None:
            self.listener.stop()
        self.background.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.datasource is not None and self._owns_datasource:
            self.datasource.close()


# The engine of this process, once launched; and whether DBOS() was
# constructed, which only the wording of an error depends on.
_engine: Optional[Engine] = None
_constructed = False


def set_engine(engine: Optional[Engine]) -> None:
    global _engine
    _engine = engine


def set_constructed(constructed: bool) -> None:
    global _constructed
    _constructed = constructed


def get_engine(what: str) -> Engine:
    """The launched engine, or a clear error naming what was used too early."""
    if _engine is not None:
        return _engine
    if not _constructed:
        raise DBOSException(
            f"{what} was invoked before DBOS was initialized: construct "
            "DBOS(config=...) and call DBOS.launch() first"
        )
    raise DBOSNotLaunchedError(f"{what} was invoked")


def peek_engine() -> Optional[Engine]:
    return _engine
