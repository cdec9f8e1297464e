"""Supervising an async step: a deadline for each attempt, and preemption
when its workflow is cancelled.

A plain step notices a cancellation only at the workflow's next operation,
and runs as long as it likes. An async step may ask for more: with
``timeout_seconds`` each attempt runs as a task that is cancelled (and its
cleanup awaited) when its deadline passes, raising ``DBOSStepTimeoutError``;
with ``preemptible`` the step's task is cancelled as soon as its workflow is,
raising ``DBOSWorkflowCancelledError``, which is not recorded (the step runs
again when the workflow resumes).

A cancellation made in this process, or announced by the PostgreSQL
listener, wakes the watch at once through the engine's waiters; otherwise
the watch reads the workflow's status every polling interval.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from contextlib import asynccontextmanager, nullcontext
from typing import Any, AsyncContextManager, AsyncIterator, Awaitable, Callable, Optional, Set, TypeVar

from .._sysdb.notifications import cancel_key
from ..error import DBOSStepTimeoutError, DBOSWorkflowCancelledError
from .engine import Engine

logger = logging.getLogger("dbos")

T = TypeVar("T")


class LoopWakeup(threading.Event):
    """A waiter's event that also wakes an asyncio event on ``loop`` when set,
    from whichever thread sets it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.woken = asyncio.Event()

    def set(self) -> None:
        super().set()
        try:
            self.loop.call_soon_threadsafe(self.woken.set)
        except RuntimeError:
            pass  # the loop is closed: nothing is left waiting on it


async def watch_cancellation(engine: Engine, workflow_id: str) -> None:
    """Return once ``workflow_id`` is cancelled."""
    wakeup = LoopWakeup(asyncio.get_running_loop())
    key = cancel_key(workflow_id)
    engine.waiters.register(key, wakeup)
    try:
        # Registered first, so a cancellation from now on wakes us; one made
        # before is already in the engine's memory, or found by the first poll.
        while not _known_cancelled(engine, workflow_id):
            try:
                await asyncio.wait_for(wakeup.woken.wait(), engine.poll_interval)
            except asyncio.TimeoutError:
                if await _read_cancelled(engine, workflow_id):
                    return
            wakeup.woken.clear()
    finally:
        engine.waiters.unregister(key, wakeup)


async def _read_cancelled(engine: Engine, workflow_id: str) -> bool:
    """The workflow's status, read where nothing notifies this process; the
    watch outlives a failed read (it looks again at the next poll)."""
    try:
        return await engine.in_pool(engine.is_cancelled, workflow_id)
    except Exception:
        logger.warning(f"Could not read the status of workflow {workflow_id}", exc_info=True)
        return False


def _known_cancelled(engine: Engine, workflow_id: str) -> bool:
    try:
        engine.check_cancelled_here(workflow_id)
    except DBOSWorkflowCancelledError:
        return True
    return False


class Supervisor:
    """Runs the attempts of one execution of an async step."""

    def __init__(self, engine: Engine, name: str, workflow_id: str, timeout_seconds: Optional[float],
                 cancelled: Optional["asyncio.Task[None]"]) -> None:
        self.engine = engine
        self.name = name
        self.workflow_id = workflow_id
        self.timeout_seconds = timeout_seconds
        self.cancelled = cancelled  # done once the workflow is cancelled (preemptible steps)

    async def attempt(self, make: Callable[[], Awaitable[T]]) -> T:
        """One attempt: ``make()`` awaited under the deadline and the cancellation watch."""
        if self.timeout_seconds is None and self.cancelled is None:
            return await make()
        task: "asyncio.Future[T]" = asyncio.ensure_future(make())
        watched: Set["asyncio.Future[Any]"] = {task} if self.cancelled is None else {task, self.cancelled}
        try:
            await asyncio.wait(watched, timeout=self.timeout_seconds, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # our caller was cancelled: the attempt goes with it
            task.cancel()
            raise
        if task.done():  # finished, even if a deadline or a cancellation came at the same moment
            return task.result()
        return await _stop(task, self._abort())

    async def pause(self, seconds: float) -> None:
        """The wait between attempts, cut short by a cancellation."""
        if self.cancelled is None:
            await asyncio.sleep(seconds)
            return
        await asyncio.wait({self.cancelled}, timeout=seconds)
        if self._preempted():
            raise self._abort()

    def _preempted(self) -> bool:
        # The engine's memory as well as the watch: a cancellation this process
        # already knows of counts even if the watch has not woken up yet.
        if self.cancelled is None:
            return False
        return self.cancelled.done() or _known_cancelled(self.engine, self.workflow_id)

    def _abort(self) -> BaseException:
        # A cancellation outranks a deadline that passed at the same moment.
        if self._preempted():
            return DBOSWorkflowCancelledError(
                f"Workflow {self.workflow_id} was cancelled while its step {self.name} ran"
            )
        assert self.timeout_seconds is not None, "only a deadline or a cancellation stops an attempt"
        return DBOSStepTimeoutError(self.name, self.timeout_seconds)


async def _stop(task: "asyncio.Future[T]", abort: BaseException) -> T:
    """Cancel ``task``, wait for its cleanup, and raise ``abort`` (unless it finished after all)."""
    task.cancel()
    await asyncio.wait({task})
    if task.cancelled():
        raise abort
    error = task.exception()
    if error is not None:
        raise abort from error
    return task.result()


def supervising(engine: Engine, workflow_id: str, name: str, timeout_seconds: Optional[float],
                preemptible: bool) -> AsyncContextManager[Supervisor]:
    """A ``Supervisor`` for the block, watching the workflow's cancellation if ``preemptible``."""
    supervisor = Supervisor(engine, name, workflow_id, timeout_seconds, None)
    # Most steps are neither: they pay for no watch and no generator.
    return _watched(supervisor) if preemptible else nullcontext(supervisor)


@asynccontextmanager
async def _watched(supervisor: Supervisor) -> AsyncIterator[Supervisor]:
    watch = asyncio.ensure_future(watch_cancellation(supervisor.engine, supervisor.workflow_id))
    supervisor.cancelled = watch
    try:
        yield supervisor
    finally:
        watch.cancel()
        await _settled(watch)


async def _settled(task: "asyncio.Future[Any]") -> None:
    # Waited for, so the watch has unregistered itself before the step returns.
    await asyncio.wait({task})
