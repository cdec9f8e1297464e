"""Messages, events and durable sleep between workflows and the outside.

Inside a workflow each operation is a checkpointed step, so a replay returns
what the first execution saw. Waiting is on a local event: a writer in this
process sets it directly after its commit, the PostgreSQL listener sets it for
writers elsewhere, and where there is no listener the waiter polls.
"""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Tuple, TypeVar

from .context import WorkflowRun, current_run, get_context
from .engine import Engine
from .._serialization import Codec
from ..error import DBOSException, DBOSWorkflowCancelledError
from .._sysdb.messages import cancel_key, event_key, message_key
from .._sysdb.records import StepWrite
from .._sysdb.workflows import now_ms
from .workflow import checkpoint_step, raise_if_cancelled, replayed

T = TypeVar("T")

SEND, SEND_BULK, RECV, SLEEP = "DBOS.send", "DBOS.send_bulk", "DBOS.recv", "DBOS.sleep"
SET_EVENT, GET_EVENT, GET_EVENTS = "DBOS.setEvent", "DBOS.getEvent", "DBOS.get_events"


@dataclass
class SendMessage:
    destination_id: str
    message: Any
    topic: Optional[str] = None
    idempotency_key: Optional[str] = None


# ----------------------------------------------------------------------
# Waiting
# ----------------------------------------------------------------------


def wait_until(engine: Engine, keys: Sequence[str], check: Callable[[], Optional[T]],
               wake_at: float, run: Optional[WorkflowRun] = None) -> Optional[T]:
    """``check()`` until it finds something or ``wake_at`` (epoch seconds) passes.

    Raises ``DBOSWorkflowCancelledError`` if ``run`` is cancelled meanwhile.
    """
    with watching(engine, keys, run) as event:
        return wait_on(engine, event, check, wake_at, run)


class Signal(threading.Event):
    """An event that remembers whether its last wait ended because it was set."""

    rang = False

    def wait(self, timeout: Optional[float] = None) -> bool:
        self.rang = super().wait(timeout)
        return self.rang


@contextmanager
def watching(engine: Engine, keys: Sequence[str], run: Optional[WorkflowRun]) -> Iterator[Signal]:
    """An event set whenever one of ``keys`` (or ``run``'s cancellation) is notified."""
    event = Signal()
    watched = list(keys) + ([cancel_key(run.workflow_id)] if run else [])
    for key in watched:
        engine.waiters.register(key, event)
    try:
        yield event
    finally:
        for key in watched:
            engine.waiters.unregister(key, event)


def wait_on(engine: Engine, event: threading.Event, check: Callable[[], Optional[T]],
            wake_at: float, run: Optional[WorkflowRun], check_first: bool = True) -> Optional[T]:
    """The loop of ``wait_until`` on an event already registered; with
    ``check_first`` False it waits before the first check (the caller has
    just checked, after registering, so any later write has set the event)."""
    while True:
        if check_first:
            found = check()
            if found is not None:
                return found
        check_first = True
        _check_cancelled(engine, run)
        remaining = wake_at - time.time()
        if remaining <= 0:
            return None
        event.wait(min(remaining, engine.poll_interval))
        event.clear()


def _check_cancelled(engine: Engine, run: Optional[WorkflowRun]) -> None:
    if run is None:
        return
    if engine.is_cancelled(run.workflow_id):
        raise DBOSWorkflowCancelledError(f"Workflow {run.workflow_id} was cancelled")


def _workflow_run(what: str) -> WorkflowRun:
    run = current_run()
    if run is None:
        raise DBOSException(f"{what} must be called from within a workflow")
    return run


def durable_wake_time(engine: Engine, run: WorkflowRun, function_id: int, seconds: float) -> float:
    """When a durable sleep ends: recorded by the first execution, so a recovered
    workflow waits only for what is left."""
    record = run.recorded_step(function_id, SLEEP)
    if record is not None:
        return float(replayed(engine, record))
    wake_at = time.time() + max(0.0, seconds)
    _record_wake_time(engine, run, function_id, wake_at)
    return wake_at


def _record_wake_time(engine: Engine, run: WorkflowRun, function_id: int, wake_at: float) -> None:
    output = engine.codec.dump_value(wake_at, what="a sleep's wake-up time")
    checkpoint_step(engine, StepWrite(run.workflow_id, function_id, SLEEP, output=output,
                                      started_at_ms=now_ms(), completed_at_ms=int(wake_at * 1000)))


# A recv or get_event that waits records its timeout's wake-up time (its
# sleep step) only once it has waited this long. Most waits end sooner, and
# the record would be a commit on the reply's critical path; a crash inside
# this window restarts the timeout at recovery, as if the wait began then.
RECORD_WAIT_AFTER_S = 0.05


def timed_wait(engine: Engine, run: WorkflowRun, sleep_id: int, timeout_seconds: float,
               event: threading.Event, check: Callable[[], Optional[T]]) -> Optional[T]:
    """Wait on ``event`` (already registered, and ``check`` already tried) for
    what ``check`` finds, until the durable timeout of sleep step ``sleep_id``."""
    record = run.recorded_step(sleep_id, SLEEP)
    if record is not None:
        return wait_on(engine, event, check, float(replayed(engine, record)), run, check_first=False)
    wake_at = time.time() + max(0.0, timeout_seconds)
    early = min(wake_at, time.time() + RECORD_WAIT_AFTER_S)
    found = wait_on(engine, event, check, early, run, check_first=False)
    if found is not None or early >= wake_at:
        return found
    _record_wake_time(engine, run, sleep_id, wake_at)
    return wait_on(engine, event, check, wake_at, run)


# ----------------------------------------------------------------------
# Sleep
# ----------------------------------------------------------------------


def reserve_sleep(seconds: float) -> Optional[Tuple[WorkflowRun, int]]:
    if seconds <= 0:
        return None
    ctx = get_context()
    if ctx is not None and ctx.step_id is not None:
        raise AssertionError("DBOS.sleep() cannot be called from inside a step")
    run = _workflow_run("DBOS.sleep()")
    return run, run.next_function_id()


def sleep(engine: Engine, reserved: Optional[Tuple[WorkflowRun, int]], seconds: float) -> None:
    if reserved is None:
        return
    run, function_id = reserved
    wake_at = durable_wake_time(engine, run, function_id, seconds)
    wait_until(engine, [], lambda: None, wake_at, run)


# ----------------------------------------------------------------------
# Messages
# ----------------------------------------------------------------------


def reserve_step(name: str) -> Optional[Tuple[WorkflowRun, int]]:
    """A function ID in the current workflow (None outside one or in a step)."""
    run = current_run()
    return (run, run.next_function_id()) if run is not None else None


def send(engine: Engine, reserved: Optional[Tuple[WorkflowRun, int]],
         messages: Sequence[SendMessage], step_name: str) -> None:
    if reserved is not None and reserved[0].recorded_step(reserved[1], step_name):
        return
    keys = [m.idempotency_key for m in messages if m.idempotency_key]
    if len(keys) != len(set(keys)):
        raise DBOSException(f"send_bulk() was given the same idempotency key twice: {keys}")
    rows = [message_row(engine.codec, m) for m in messages]
    step = _none_step(engine, reserved, step_name)
    status = engine.sysdb.messages.send(rows, step)
    for m in messages:
        engine.waiters.notify(message_key(m.destination_id, m.topic))
    if reserved is not None and status is not None:
        raise_if_cancelled(reserved[0], status)


def message_row(codec: Codec, m: SendMessage) -> Tuple[str, Optional[str], str, str]:
    """The notification row: an idempotency key makes its UUID, so a resend is skipped."""
    text = codec.dump_value(m.message, what=f"the message to workflow {m.destination_id}")
    uid = f"{m.idempotency_key}::{m.destination_id}" if m.idempotency_key else str(uuid.uuid4())
    return m.destination_id, m.topic, text, uid


def _none_step(engine: Engine, reserved: Optional[Tuple[WorkflowRun, int]], name: str) -> Optional[StepWrite]:
    if reserved is None:
        return None
    output = engine.codec.dump_value(None, what="a step output")
    return StepWrite(reserved[0].workflow_id, reserved[1], name, output=output, started_at_ms=now_ms())


def reserve_recv() -> Tuple[WorkflowRun, int, int]:
    ctx = get_context()
    if ctx is not None and ctx.step_id is not None:
        raise DBOSException("DBOS.recv() cannot be called from inside a step; call it from the workflow")
    run = _workflow_run("DBOS.recv()")
    return run, run.next_function_id(), run.next_function_id()


def recv(engine: Engine, reserved: Tuple[WorkflowRun, int, int], topic: Optional[str],
         timeout_seconds: float) -> Any:
    run, function_id, sleep_id = reserved
    record = run.recorded_step(function_id, RECV)
    if record is not None:
        return replayed(engine, record)
    step = StepWrite(run.workflow_id, function_id, RECV, started_at_ms=now_ms())
    messages = engine.sysdb.messages

    def take() -> Optional[Tuple[str, str]]:
        # Woken by a send, the message is most likely there: no look first.
        return messages.consume(run.workflow_id, topic, step, look_first=not event.rang)

    with watching(engine, [message_key(run.workflow_id, topic)], run) as event:
        got = take()
        if got is None:
            got = timed_wait(engine, run, sleep_id, timeout_seconds, event, take)
    if got is None:
        output = engine.codec.dump_value(None, what="a recv timeout")
        checkpoint_step(engine, replace(step, output=output))
        return None
    text, status = got
    raise_if_cancelled(run, status)
    return engine.codec.load_value(text)


# ----------------------------------------------------------------------
# Events
# ----------------------------------------------------------------------


def set_event(engine: Engine, key: str, value: Any) -> None:
    ctx = get_context()
    if ctx is None or ctx.run is None:
        raise DBOSException("DBOS.set_event() must be called from within a workflow or step")
    run, text = ctx.run, engine.codec.dump_value(value, what=f"the value of event {key!r}")
    if ctx.step_id is not None:
        engine.sysdb.messages.set_event(run.workflow_id, key, text, ctx.step_id)
    else:
        function_id = run.next_function_id()
        if run.recorded_step(function_id, SET_EVENT) is not None:
            return
        step = _none_step(engine, (run, function_id), SET_EVENT)
        status = engine.sysdb.messages.set_event(run.workflow_id, key, text, function_id, step)
        raise_if_cancelled(run, str(status))
    engine.waiters.notify(event_key(run.workflow_id, key))


def reserve_get_event() -> Optional[Tuple[WorkflowRun, int, int]]:
    run = current_run()
    return (run, run.next_function_id(), run.next_function_id()) if run else None


def get_event(engine: Engine, reserved: Optional[Tuple[WorkflowRun, int, int]], workflow_id: str,
              key: str, timeout_seconds: float) -> Any:
    if reserved is None:
        return _await_event(engine, workflow_id, key, time.time() + timeout_seconds, None)
    run, function_id, sleep_id = reserved
    record = run.recorded_step(function_id, GET_EVENT)
    if record is not None:
        return replayed(engine, record)
    def look() -> Optional[Tuple[str]]:
        return engine.sysdb.messages.get_event(workflow_id, key)

    with watching(engine, [event_key(workflow_id, key)], run) as event:
        found = look()
        if found is None:
            found = timed_wait(engine, run, sleep_id, timeout_seconds, event, look)
    value = engine.codec.load_value(found[0]) if found else None
    output = engine.codec.dump_value(value, what=f"the value of event {key!r}")
    checkpoint_step(engine, StepWrite(run.workflow_id, function_id, GET_EVENT, output=output))
    return value


def _await_event(engine: Engine, workflow_id: str, key: str, wake_at: float,
                 run: Optional[WorkflowRun]) -> Any:
    found = wait_until(engine, [event_key(workflow_id, key)],
                       lambda: engine.sysdb.messages.get_event(workflow_id, key), wake_at, run)
    return engine.codec.load_value(found[0]) if found else None


def get_all_events(engine: Engine, reserved: Optional[Tuple[WorkflowRun, int]], workflow_id: str) -> Dict[str, Any]:
    if reserved is not None:
        record = reserved[0].recorded_step(reserved[1], GET_EVENTS)
        if record is not None:
            result: Dict[str, Any] = replayed(engine, record)
            return result
    raw = engine.sysdb.messages.all_events(workflow_id)
    values = {k: engine.codec.load_value(v) for k, v in raw.items()}
    if reserved is not None:
        output = engine.codec.dump_value(values, what="the events of a workflow")
        checkpoint_step(engine, StepWrite(reserved[0].workflow_id, reserved[1], GET_EVENTS, output=output))
    return values

