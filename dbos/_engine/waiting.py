"""Waiting for something another execution writes: a message, an event, a
stream value, a workflow's outcome.

A waiter registers one event under the keys it waits for; a writer in this
process sets it right after its commit, the PostgreSQL listener sets it for
writers elsewhere, and where there is no listener the waiter polls. The loop
that looks stays with the caller, which knows what it looks for::

    with watching(engine, [message_key(workflow_id, topic)], run) as watch:
        found = look()
        while found is None and watch.wait(wake_at):
            found = look()
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator, Optional, Protocol, Sequence

from .._serialization import Codec
from .._sysdb import Storage
from .._sysdb.notifications import cancel_key
from ..error import DBOSWorkflowCancelledError
from .context import WorkflowRun
from .waiters import Waiters


class Waitable(Protocol):
    """What a wait needs of its owner: the ``Engine``, or a ``DBOSClient``'s
    stand-in, whose waits read the same way without running any workflow."""

    sysdb: Storage
    codec: Codec
    waiters: Waiters
    poll_interval: float

    def is_cancelled(self, workflow_id: str) -> bool: ...


class Watch:
    """One event set whenever a watched key (or the run's cancellation) is notified."""

    def __init__(self, engine: Waitable, run: Optional[WorkflowRun]) -> None:
        self._engine = engine
        self._run = run
        self.event = threading.Event()
        # Whether the last wait ended because the event was set (a wake-up,
        # not a timeout): the watched thing is then most likely there.
        self.rang = False

    def wait(self, wake_at: float) -> bool:
        """Wait for a wake-up or the next poll; False once ``wake_at`` (epoch
        seconds) has passed. Raises ``DBOSWorkflowCancelledError`` if the run
        was cancelled."""
        if self._run is not None and self._engine.is_cancelled(self._run.workflow_id):
            raise DBOSWorkflowCancelledError(f"Workflow {self._run.workflow_id} was cancelled")
        remaining = wake_at - time.time()
        if remaining <= 0:
            return False
        self.rang = self.event.wait(min(remaining, self._engine.poll_interval))
        self.event.clear()
        return True


@contextmanager
def watching(engine: Waitable, keys: Sequence[str], run: Optional[WorkflowRun]) -> Iterator[Watch]:
    """A ``Watch`` of ``keys`` (and of ``run``'s cancellation) for the block."""
    watch = Watch(engine, run)
    watched = list(keys) + ([cancel_key(run.workflow_id)] if run else [])
    for key in watched:
        engine.waiters.register(key, watch.event)
    try:
        yield watch
    finally:
        for key in watched:
            engine.waiters.unregister(key, watch.event)
