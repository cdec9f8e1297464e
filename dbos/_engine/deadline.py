"""Workflow timeouts: ``SetWorkflowTimeout`` and the timer that enforces deadlines.

A timeout becomes an absolute deadline when the workflow starts; children
inherit the deadline itself, not the timeout. When a deadline passes, the
workflow (only that one: children carry their own deadlines) is cancelled.
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from typing import Callable, List, Optional, Tuple

from .context import ContextChange, DBOSContext

logger = logging.getLogger("dbos")

_UNSET = object()
TIMEOUT_KEY = "workflow_timeout_ms"


class SetWorkflowTimeout(ContextChange):
    """Give workflows started in this block a timeout (None: no timeout, not even
    one inherited from a parent)."""

    def __init__(self, workflow_timeout_sec: Optional[float]) -> None:
        if workflow_timeout_sec is not None and not (
            math.isfinite(workflow_timeout_sec) and workflow_timeout_sec > 0
        ):
            raise ValueError(
                f"SetWorkflowTimeout needs a positive number of seconds or None, got {workflow_timeout_sec!r}"
            )
        self.timeout_ms = None if workflow_timeout_sec is None else int(workflow_timeout_sec * 1000)

    def _change(self, ctx: DBOSContext) -> None:
        ctx.extras = {**ctx.extras, TIMEOUT_KEY: self.timeout_ms}

    def __enter__(self) -> "SetWorkflowTimeout":
        super().__enter__()
        return self


def timeout_and_deadline(ctx: DBOSContext, inherited_ms: Optional[int],
                         now_ms: int) -> Tuple[Optional[int], Optional[int]]:
    """``(workflow_timeout_ms, deadline_epoch_ms)`` for a workflow starting now."""
    if TIMEOUT_KEY in ctx.extras:
        timeout = ctx.extras[TIMEOUT_KEY]
        return timeout, (now_ms + timeout if timeout is not None else None)
    return None, inherited_ms


class DeadlineTimer:
    """One thread that fires ``on_expiry(workflow_id)`` at each armed deadline."""

    def __init__(self, on_expiry: Callable[[str], object]) -> None:
        self._on_expiry = on_expiry
        self._heap: List[Tuple[int, str]] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="dbos-deadlines", daemon=True)
        self._thread.start()

    def arm(self, workflow_id: str, deadline_ms: int) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline_ms, workflow_id))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            due = self._next_due()
            if due is None:
                return
            try:
                self._on_expiry(due)
            except Exception:
                logger.warning(f"Could not cancel workflow {due} at its deadline", exc_info=True)

    def _next_due(self) -> Optional[str]:
        with self._cond:
            while not self._stopped:
                if self._heap and self._heap[0][0] <= time.time() * 1000:
                    return heapq.heappop(self._heap)[1]
                wait = (self._heap[0][0] / 1000 - time.time()) if self._heap else None
                self._cond.wait(wait)
            return None
