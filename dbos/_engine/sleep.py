"""Durable sleep, and the durable timeout of a receive or an event wait.

A sleep records when it ends, the first time it runs: a recovered workflow
sleeps only for what is left. ``recv`` and ``get_event`` in a workflow keep a
sleep operation of their own for their timeout, so a recovered wait also
ends when the first one would have.
"""

from __future__ import annotations

import time
from typing import Iterator, Optional

from ..error import DBOSException
from .context import current_run, get_context
from .engine import get_engine
from .operation import Operation
from .waiting import Watch, watching

SLEEP = "DBOS.sleep"

# A recv or get_event that waits records its timeout's wake-up time only once
# it has waited this long. Most waits end sooner, and the record would be a
# commit on the reply's critical path; a crash inside this window restarts
# the timeout at recovery, as if the wait began then.
RECORD_WAIT_AFTER_S = 0.05


def begin_sleep(what: str) -> Operation:
    """The sleep operation of the running workflow. ``DBOS.sleep`` belongs to a
    workflow's own code: ``AssertionError`` in a step, ``DBOSException`` outside."""
    ctx = get_context()
    if ctx is not None and ctx.step_id is not None:
        raise AssertionError("DBOS.sleep() cannot be called from inside a step")
    if current_run() is None:
        raise DBOSException("DBOS.sleep() must be called from within a workflow")
    op = Operation.begin(get_engine(what), SLEEP)
    assert op is not None, "inside the workflow found above"
    return op


def sleep(op: Operation, seconds: float) -> None:
    """Sleep until the recorded wake-up time (recorded now, the first time)."""
    wake_at = wake_time(op, seconds)
    with watching(op.engine, [], op.workflow) as watch:
        while watch.wait(wake_at):
            pass


def wake_time(op: Operation, seconds: float) -> float:
    """When the sleep ``op`` ends: recorded by the first execution."""
    if op.replaying:
        return float(op.replay())
    wake_at = time.time() + max(0.0, seconds)
    record_wake_time(op, wake_at)
    return wake_at


def record_wake_time(op: Operation, wake_at: float) -> None:
    output = op.engine.codec.dump_value(wake_at, what="a sleep's wake-up time")
    op.checkpoint(output=output, completed_at_ms=int(wake_at * 1000))


def timed_waits(watch: Watch, timer: Optional[Operation], timeout_seconds: float) -> Iterator[None]:
    """The times to look again, until the timeout (``timer``'s, when in a
    workflow) passes. The caller has looked once already, after watching."""
    if timer is None:
        wake_at = time.time() + timeout_seconds
    elif timer.replaying:
        wake_at = float(timer.replay())
    else:
        wake_at = time.time() + max(0.0, timeout_seconds)
        early = min(wake_at, time.time() + RECORD_WAIT_AFTER_S)
        while watch.wait(early):
            yield
        if early >= wake_at:
            return
        record_wake_time(timer, wake_at)
        yield
    while watch.wait(wake_at):
        yield
