"""Streams: values a workflow appends under a key, read in order by anyone.

A stream ends at the close marker, or when its writer is no longer active and
every value it wrote has been read. Inside a workflow each write, and each
value read, is an operation (``operation.py``), so a replay writes nothing
twice and reads the same sequence; a read that timed out times out again.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any, Callable, Generator, Optional, Tuple

from .._serialization import Codec
from .._status import ACTIVE_STATUSES
from .._sysdb import Storage
from .._sysdb.ids import check_workflow_id
from .._sysdb.notifications import stream_key
from ..error import DBOSNonExistentWorkflowError, DBOSStreamNondeterminismError, DBOSStreamTimeoutError
from .context import WorkflowRun, current_run
from .engine import Engine
from .operation import Operation, workflow_write
from .waiting import Waitable, watching

CLOSED = "__DBOS_STREAM_CLOSED__"
# The marker as DBOS Transact writes it (portable JSON, whatever the app's
# serializer): recognised before decoding, so a stream it closed ends for our
# readers too, rather than failing to decode (or being read as a last value).
CLOSED_PORTABLE = json.dumps(CLOSED)
WRITE, CLOSE, READ = "DBOS.writeStream", "DBOS.closeStream", "DBOS.readStream"
READ_OFFSET = "DBOS.readStreamOffset"
END = ("end",)
Entry = Tuple[Any, ...]  # ("value", v), or END


def write_stream(engine: Engine, key: str, value: Any, step_name: str = WRITE,
                 serialization_type: Any = None) -> None:
    """Append to a stream of the running workflow; inside a step, without a checkpoint of its own."""
    workflow_id = workflow_write(engine, step_name, engine.sysdb.write_stream, key, value,
                                 api="DBOS.write_stream()", what=f"a value of stream {key!r}",
                                 serialization_type=serialization_type)
    if workflow_id is not None:
        engine.waiters.wake(stream_key(workflow_id, key))


def close_stream(engine: Engine, key: str) -> None:
    write_stream(engine, key, CLOSED, CLOSE)


def read_stream(engine: Engine, workflow_id: str, key: str, offset: int = 0,
                timeout_seconds: Optional[float] = None) -> Generator[Any, None, None]:
    check_read(engine.sysdb, workflow_id, timeout_seconds)
    values = stream_values(lambda at: _next_entry(engine, workflow_id, key, at, timeout_seconds), offset)
    run = current_run()
    if run is None:
        yield from values
        return
    # Two reads interleaved would take function IDs in an order that depends on
    # scheduling, and a replay could hand each the other's values.
    if run.reading_stream:
        raise DBOSStreamNondeterminismError(run.workflow_id, key)
    run.reading_stream = True
    try:
        yield from values
    finally:
        run.reading_stream = False


def read_stream_offset(engine: Engine, workflow_id: str, key: str, offset: int,
                       timeout_seconds: Optional[float] = None) -> Any:
    """The value at ``offset``; inside a workflow an operation, so a replay reads it again."""
    check_read(engine.sysdb, workflow_id, timeout_seconds)
    entry = _next_entry(engine, workflow_id, key, offset, timeout_seconds, READ_OFFSET)
    return value_at(entry, workflow_id, key)


def check_read(sysdb: Storage, workflow_id: str, timeout_seconds: Optional[float]) -> None:
    """Refuse a negative timeout, a bad ID, and a stream of a workflow that does not exist."""
    check_workflow_id(workflow_id)
    if timeout_seconds is not None and timeout_seconds < 0:
        raise ValueError(f"timeout_seconds must not be negative, got {timeout_seconds}")
    if sysdb.workflow_outcome(workflow_id) is None:
        raise DBOSNonExistentWorkflowError("stream's workflow", workflow_id)


def stream_values(next_entry: Callable[[int], Entry], offset: int) -> Generator[Any, None, None]:
    """The values of the entries ``next_entry`` reads from ``offset`` on, until the end."""
    while True:
        entry = next_entry(offset)
        # Compared by value: a replayed entry is a deserialized copy.
        if tuple(entry) == END:
            return
        yield entry[1]
        offset += 1


def value_at(entry: Entry, workflow_id: str, key: str) -> Any:
    """The value of the entry read at one offset; ``DBOSStreamTimeoutError``
    if the stream ended before that offset."""
    if tuple(entry) == END:
        raise DBOSStreamTimeoutError(workflow_id, key)
    return entry[1]


def _next_entry(engine: Engine, workflow_id: str, key: str, offset: int, timeout: Optional[float],
                name: str = READ) -> Entry:
    """The next entry; an operation inside a workflow, and so is a timeout,
    which a replay raises again."""
    op = Operation.begin(engine, name)
    if op is None:
        return fetch_entry(engine, None, workflow_id, key, offset, timeout)
    if op.replaying:
        replayed: Entry = op.replay()
        return replayed
    try:
        entry = fetch_entry(engine, op.workflow, workflow_id, key, offset, timeout)
    except DBOSStreamTimeoutError as exc:
        op.fail(exc)
        raise
    return op.succeed(entry, what=f"a value of stream {key!r}")


def fetch_entry(engine: Waitable, run: Optional[WorkflowRun], workflow_id: str, key: str,
                offset: int, timeout: Optional[float]) -> Entry:
    """The entry at ``offset``, waiting for it; ``DBOSStreamTimeoutError`` after ``timeout``."""
    wake_at = time.time() + timeout if timeout is not None else float("inf")
    # The writer's own key too: its end is the end of an unclosed stream.
    with watching(engine, [stream_key(workflow_id, key), workflow_id], run) as watch:
        found = stream_entry(engine.sysdb, engine.codec, workflow_id, key, offset)
        while found is None and watch.wait(wake_at):
            found = stream_entry(engine.sysdb, engine.codec, workflow_id, key, offset)
    if found is None:
        raise DBOSStreamTimeoutError(workflow_id, key, timeout)
    return found


def stream_entry(sysdb: Storage, codec: Codec, workflow_id: str, key: str, offset: int) -> Optional[Entry]:
    """The entry at ``offset``: its value, ``END`` once the stream is closed or
    its writer is done with nothing left, None while the writer may write more."""
    row = sysdb.read_stream(workflow_id, key, offset)
    if row is None:
        outcome = sysdb.workflow_outcome(workflow_id)
        if outcome is not None and outcome.status in ACTIVE_STATUSES:
            return None
        # The writer is done; one more look catches a value written just before.
        row = sysdb.read_stream(workflow_id, key, offset)
        if row is None:
            return END
    if row[0] == CLOSED_PORTABLE:  # DBOS Transact writes it as portable JSON whatever the stream's format
        return END
    value = codec.for_stored(row[1]).load_value(row[0])
    return END if isinstance(value, str) and value == CLOSED else ("value", value)


def check_polling_interval(value: Optional[float]) -> None:
    """Refuse a polling interval that is not a finite number of at least a millisecond."""
    # Waiters are woken by writers and the listener; the interval only bounds
    # how long a missed wake-up can go unnoticed, and must be sane.
    if value is not None and not (math.isfinite(value) and value >= 0.001):
        raise ValueError(f"polling_interval_sec must be a finite number >= 0.001, got {value!r}")
