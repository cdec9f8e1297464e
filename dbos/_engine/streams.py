"""Streams: values a workflow appends under a key, read in order by anyone.

A stream ends at the close marker, or when its writer is no longer active and
every value it wrote has been read. Inside a workflow each value read is
checkpointed, so a replay reads the same sequence.
"""

from __future__ import annotations

import time
from typing import Any, Generator, Optional, Tuple

from .context import WorkflowRun, current_run, get_context
from .engine import Engine
from ..error import DBOSException, DBOSNonExistentWorkflowError, DBOSStreamTimeoutError
from .._status import ACTIVE_STATUSES
from .._sysdb.messages import stream_key
from .._sysdb.records import StepWrite
from .workflow import checkpoint_step, raise_if_cancelled, replayed

from .messages import wait_until

CLOSED = "__DBOS_STREAM_CLOSED__"
WRITE, CLOSE, READ = "DBOS.writeStream", "DBOS.closeStream", "DBOS.readStream"
_END = ("end",)


def write_stream(engine: Engine, key: str, value: Any, step_name: str = WRITE) -> None:
    ctx = get_context()
    if ctx is None or ctx.run is None:
        raise DBOSException("DBOS.write_stream() must be called from within a workflow or step")
    run, text = ctx.run, engine.codec.dump_value(value, what=f"a value of stream {key!r}")
    store = engine.sysdb.messages
    if ctx.step_id is not None:
        store.write_stream(run.workflow_id, key, text, ctx.step_id)
    else:
        function_id = run.next_function_id()
        if run.recorded_step(function_id, step_name) is not None:
            return
        done = engine.codec.dump_value(None, what="a step output")
        step = StepWrite(run.workflow_id, function_id, step_name, output=done)
        raise_if_cancelled(run, str(store.write_stream(run.workflow_id, key, text, function_id, step)))
    engine.waiters.notify(stream_key(run.workflow_id, key))


def close_stream(engine: Engine, key: str) -> None:
    write_stream(engine, key, CLOSED, CLOSE)


def read_stream(engine: Engine, workflow_id: str, key: str, offset: int = 0,
                timeout_seconds: Optional[float] = None) -> Generator[Any, None, None]:
    if timeout_seconds is not None and timeout_seconds < 0:
        raise ValueError(f"timeout_seconds must not be negative, got {timeout_seconds}")
    if engine.sysdb.workflows.outcome(workflow_id) is None:
        raise DBOSNonExistentWorkflowError("stream's workflow", workflow_id)
    run = current_run()
    while True:
        entry = _next_entry(engine, run, workflow_id, key, offset, timeout_seconds)
        # Compared by value: a replayed entry is a deserialized copy.
        if tuple(entry) == _END:
            return
        yield entry[1]
        offset += 1


def _next_entry(engine: Engine, run: Optional[WorkflowRun], workflow_id: str, key: str,
                offset: int, timeout: Optional[float]) -> Tuple[Any, ...]:
    """The next ``("value", v)`` or the end; checkpointed inside a workflow,
    and so is a timeout, which a replay raises again."""
    if run is None:
        return _fetch(engine, None, workflow_id, key, offset, timeout)
    function_id = run.next_function_id()
    record = run.recorded_step(function_id, READ)
    if record is not None:
        entry: Tuple[Any, ...] = replayed(engine, record)
        return entry
    try:
        entry = _fetch(engine, run, workflow_id, key, offset, timeout)
    except DBOSStreamTimeoutError as exc:
        _record_read(engine, run, StepWrite(run.workflow_id, function_id, READ,
                                            error=engine.codec.dump_error(exc)))
        raise
    output = engine.codec.dump_value(entry, what=f"a value of stream {key!r}")
    _record_read(engine, run, StepWrite(run.workflow_id, function_id, READ, output=output))
    return entry


def _record_read(engine: Engine, run: WorkflowRun, step: StepWrite) -> None:
    checkpoint_step(engine, step)


def _fetch(engine: Engine, run: Optional[WorkflowRun], workflow_id: str, key: str,
           offset: int, timeout: Optional[float]) -> Tuple[Any, ...]:
    wake_at = time.time() + timeout if timeout is not None else float("inf")

    def look() -> Optional[Tuple[Any, ...]]:
        return _look(engine, workflow_id, key, offset)

    # The writer's own key too: its end is the end of an unclosed stream.
    keys = [stream_key(workflow_id, key), workflow_id]
    found = wait_until(engine, keys, look, wake_at, run)
    if found is None:
        raise DBOSStreamTimeoutError(workflow_id, key, timeout)
    return found


def _look(engine: Engine, workflow_id: str, key: str, offset: int) -> Optional[Tuple[Any, ...]]:
    store = engine.sysdb.messages
    row = store.read_stream(workflow_id, key, offset)
    if row is None:
        outcome = engine.sysdb.workflows.outcome(workflow_id)
        if outcome is not None and outcome.status in ACTIVE_STATUSES:
            return None
        # The writer is done; one more look catches a value written just before.
        row = store.read_stream(workflow_id, key, offset)
        if row is None:
            return _END
    value = engine.codec.load_value(row[0])
    return _END if isinstance(value, str) and value == CLOSED else ("value", value)
