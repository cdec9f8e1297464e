"""Messages and events between workflows and the outside.

Inside a workflow each call is an operation (``operation.py``), so a replay
returns what the first execution saw: a send is not sent again, a receive
returns the message it consumed. The storage writes the message (or
consumes it) together with the operation's checkpoint, in one statement or
transaction. A waiting ``recv`` or ``get_event`` has a durable timeout
(``sleep.py``).

A ``recv`` in a sync workflow reads its message and holds its consumption
for the workflow's next write (``operation.settle``): a send, an event or a
stream value carries it in its own transaction, so a workflow answering a
message commits once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .._serialization import Codec
from .._sysdb import Storage
from .._sysdb.ids import check_workflow_id
from .._sysdb.notifications import event_key, message_key
from .._sysdb.records import ListQuery, Message, Received
from ..error import DBOSException
from .context import WorkflowRun, get_context
from .engine import Engine
from .operation import Operation, carrying_received, codec_for, durable, durable_async, settle, workflow_write
from .sleep import SLEEP, timed_waits
from .waiting import Waitable, watching

SEND, SEND_BULK, RECV = "DBOS.send", "DBOS.send_bulk", "DBOS.recv"
SET_EVENT, GET_EVENT, GET_EVENTS = "DBOS.setEvent", "DBOS.getEvent", "DBOS.get_events"


@dataclass
class SendMessage:
    destination_id: str
    message: Any
    topic: Optional[str] = None
    idempotency_key: Optional[str] = None


# ----------------------------------------------------------------------
# Sending
# ----------------------------------------------------------------------


def send(engine: Engine, messages: Sequence[SendMessage], name: str, to_forks: bool = False,
         serialization_type: Any = None) -> None:
    """Send every message, atomically; once per workflow execution history.
    ``to_forks``: also to every workflow forked from each destination.
    ``serialization_type`` DEFAULT: the sending workflow's format."""
    codec = codec_for(engine, _sender(), serialization_type)
    _send(engine, Operation.begin(engine, name, carries_received=True), messages, codec, to_forks)


async def send_async(engine: Engine, messages: Sequence[SendMessage], name: str, to_forks: bool = False,
                     serialization_type: Any = None) -> None:
    codec = codec_for(engine, _sender(), serialization_type)
    op = Operation.begin(engine, name)
    await engine.in_pool(_send, engine, op, messages, codec, to_forks)


def _sender() -> Optional[WorkflowRun]:
    """The workflow sending (from its code or one of its steps), if any."""
    ctx = get_context()
    return ctx.run if ctx is not None else None


def _send(engine: Engine, op: Optional[Operation], messages: Sequence[SendMessage], codec: Codec,
          to_forks: bool) -> None:
    if op is not None and op.replaying:
        settle(engine, op.workflow)
        return
    rows = message_rows(codec, messages)  # refuses an idempotency key given twice
    if to_forks:  # looked up here, not before: a replay neither sends nor looks
        messages = to_every_fork(engine.sysdb, messages)
        rows = [message_row(codec, m) for m in messages]
    keys = [message_key(m.destination_id, m.topic) for m in messages]
    # Only a message's own destination receives it: one waiting here is woken
    # here, so other processes need hear of it only when one is not.
    announce = not all(engine.waiters.waiting(key) for key in keys)
    if op is None:
        status = engine.sysdb.send_messages(rows, announce=announce)
    else:
        step = op.write(output=engine.codec.dump_value(None, what="a step output"))
        status = carrying_received(op.workflow, lambda received: engine.sysdb.send_messages(
            rows, step, received, announce))
    for key in keys:
        engine.waiters.wake(key)
    if op is not None:
        op.confirm(status)


def with_forks(sysdb: Storage, workflow_ids: Sequence[str]) -> List[str]:
    """The IDs, and every workflow forked from them, transitively, that exists now."""
    found = list(dict.fromkeys(workflow_ids))
    frontier = list(found)
    while frontier:
        rows = sysdb.list_workflows(ListQuery(forked_from=frontier, load_input=False, load_output=False))
        frontier = [r["workflow_uuid"] for r in rows if r["workflow_uuid"] not in found]
        found += frontier
    return found


def to_every_fork(sysdb: Storage, messages: Sequence[SendMessage]) -> List[SendMessage]:
    """Each message, and a copy of it for every fork of its destination."""
    return [replace(m, destination_id=destination)
            for m in messages for destination in with_forks(sysdb, [m.destination_id])]


def message_rows(codec: Codec, messages: Sequence[SendMessage]) -> List[Message]:
    """The notification rows of a send; ``DBOSException`` for an idempotency key given twice."""
    keys = [m.idempotency_key for m in messages if m.idempotency_key]
    if len(keys) != len(set(keys)):
        raise DBOSException(f"send_bulk() was given the same idempotency key twice: {keys}")
    return [message_row(codec, m) for m in messages]


def message_row(codec: Codec, m: SendMessage) -> Message:
    """The notification row: an idempotency key makes its UUID, so a resend is skipped."""
    check_workflow_id(m.destination_id, "destination_id")
    text = codec.dump_value(m.message, what=f"the message to workflow {m.destination_id}")
    uid = f"{m.idempotency_key}::{m.destination_id}" if m.idempotency_key else str(uuid.uuid4())
    return m.destination_id, m.topic, text, uid, codec.column


# ----------------------------------------------------------------------
# Receiving
# ----------------------------------------------------------------------


def begin_recv(engine: Engine) -> Tuple[Operation, Operation]:
    """The receive and its timeout, as operations of the running workflow."""
    ctx = get_context()
    if ctx is not None and ctx.step_id is not None:
        raise DBOSException("DBOS.recv() cannot be called from inside a step; call it from the workflow")
    op = Operation.begin(engine, RECV)
    if op is None:
        raise DBOSException("DBOS.recv() must be called from within a workflow")
    timer = Operation.begin(engine, SLEEP)
    assert timer is not None, "inside the same workflow"
    return op, timer


def recv(engine: Engine, topic: Optional[str], timeout_seconds: float) -> Any:
    op, timer = begin_recv(engine)
    return _recv(engine, op, timer, topic, timeout_seconds, hold=True)


async def recv_async(engine: Engine, topic: Optional[str], timeout_seconds: float) -> Any:
    # Not held: the next operation's begin runs on the event loop, which
    # must not write; and concurrent receives each consume their own.
    op, timer = begin_recv(engine)
    return await engine.in_pool(_recv, engine, op, timer, topic, timeout_seconds, False)


def _recv(engine: Engine, op: Operation, timer: Operation, topic: Optional[str],
          timeout_seconds: float, hold: bool) -> Any:
    """The oldest message on ``topic``, consumed (or ``hold``: to be consumed
    with the workflow's next write); None after the timeout."""
    if op.replaying:
        return op.replay()
    with watching(engine, [message_key(op.workflow.workflow_id, topic)], op.workflow) as watch:
        got = _take(engine, op, topic, hold)
        if got is None:
            for _ in timed_waits(watch, timer, timeout_seconds):
                got = _take(engine, op, topic, hold)
                if got is not None:
                    break
    if got is None:
        op.checkpoint(output=engine.codec.dump_value(None, what="a recv timeout"))
        return None
    text, stored = got
    return engine.codec.for_stored(stored).load_value(text)


def _take(engine: Engine, op: Operation, topic: Optional[str], hold: bool) -> Optional[Tuple[str, Optional[str]]]:
    """The oldest unread message's text and stored format, held on the
    workflow's run or consumed now; None if there is none."""
    run = op.workflow
    with run.receiving:
        assert run.received is None, "the receive's begin consumed the one received before"
        found = engine.sysdb.find_message(run.workflow_id, topic)
        if found is None:
            return None
        message_uuid, text, stored = found
        received = Received(message_uuid, replace(op.write(output=text), serialization=stored))
        if hold:
            run.received = received
            return text, stored
        status = engine.sysdb.consume_received(received)
    op.confirm(status)
    return text, stored


# ----------------------------------------------------------------------
# Events
# ----------------------------------------------------------------------


def set_event(engine: Engine, key: str, value: Any, serialization_type: Any = None) -> None:
    """Set an event of the running workflow; inside a step, without a checkpoint of its own.
    ``serialization_type`` DEFAULT: the workflow's format."""
    workflow_id = workflow_write(engine, SET_EVENT, engine.sysdb.set_event, key, value,
                                 api="DBOS.set_event()", what=f"the value of event {key!r}",
                                 serialization_type=serialization_type)
    if workflow_id is not None:
        engine.waiters.wake(event_key(workflow_id, key))


def begin_get_event(engine: Engine) -> Tuple[Optional[Operation], Optional[Operation]]:
    """The read and its timeout inside a workflow; (None, None) outside one."""
    op = Operation.begin(engine, GET_EVENT)
    return (op, Operation.begin(engine, SLEEP)) if op is not None else (None, None)


def get_event(engine: Engine, workflow_id: str, key: str, timeout_seconds: float) -> Any:
    check_workflow_id(workflow_id)
    op, timer = begin_get_event(engine)
    return _get_event(engine, op, timer, workflow_id, key, timeout_seconds)


async def get_event_async(engine: Engine, workflow_id: str, key: str, timeout_seconds: float) -> Any:
    check_workflow_id(workflow_id)
    op, timer = begin_get_event(engine)
    return await engine.in_pool(_get_event, engine, op, timer, workflow_id, key, timeout_seconds)


def wait_event(waits: Waitable, workflow_id: str, key: str, timeout_seconds: float) -> Any:
    """The event's value once set, None after the timeout; not an operation
    (what a ``DBOSClient`` reads)."""
    check_workflow_id(workflow_id)
    return _get_event(waits, None, None, workflow_id, key, timeout_seconds)


def _get_event(engine: Waitable, op: Optional[Operation], timer: Optional[Operation], workflow_id: str,
               key: str, timeout_seconds: float) -> Any:
    """The event's value once set; None after the timeout."""
    if op is not None and op.replaying:
        return op.replay()
    with watching(engine, [event_key(workflow_id, key)], None if op is None else op.workflow) as watch:
        found = engine.sysdb.get_event(workflow_id, key)
        if found is None:
            for _ in timed_waits(watch, timer, timeout_seconds):
                found = engine.sysdb.get_event(workflow_id, key)
                if found is not None:
                    break
    value = engine.codec.for_stored(found[1]).load_value(found[0]) if found else None
    if op is not None:
        op.succeed(value, what=f"the value of event {key!r}")
    return value


def get_all_events(engine: Engine, workflow_id: str) -> Dict[str, Any]:
    check_workflow_id(workflow_id)
    return durable(engine, GET_EVENTS, lambda: _all_events(engine, workflow_id),
                   what="the events of a workflow", record_error=False)


async def get_all_events_async(engine: Engine, workflow_id: str) -> Dict[str, Any]:
    check_workflow_id(workflow_id)
    return await durable_async(engine, GET_EVENTS, lambda: _all_events(engine, workflow_id),
                               what="the events of a workflow", record_error=False)


def _all_events(engine: Engine, workflow_id: str) -> Dict[str, Any]:
    raw = engine.sysdb.all_events(workflow_id)
    return {k: engine.codec.for_stored(stored).load_value(v) for k, (v, stored) in raw.items()}
