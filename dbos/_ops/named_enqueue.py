"""``DBOS.enqueue_workflow_with_options``: enqueue a workflow by its name, as a client would, from a launched process.

The workflow need not be registered here (another application may run it).
What ``EnqueueOptions`` leaves unset comes from the caller's context
(``SetWorkflowID``, ``SetEnqueueOptions``, ``SetWorkflowTimeout``, the
authenticated user), except the application version: unset, only executors
of the latest version run it. Called in a workflow, the enqueue is an
operation of that workflow: a replay returns the child it enqueued.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from .._engine.context import DBOSContext, get_context
from .._engine.deadline import TIMEOUT_KEY
from .._engine.engine import Engine
from .._engine.launch import record_refusal
from .._engine.operation import Operation
from .._engine.tracing import carrier_for, with_carrier
from .._queues.dedup import check_policy, insert_enqueued
from .._queues.queue import current_options, work_arrived
from .._sysdb.outage import new_work
from .._sysdb.records import StepWrite
from ..error import DBOSConflictingWorkflowError, DBOSException, DBOSQueueDeduplicatedError
from .client_enqueue import EnqueueOptions, enqueue_row


@dataclass
class NamedEnqueue:
    """An enqueue by name, prepared: its row and its checkpoint in the calling workflow."""

    row: Dict[str, Any]
    link: Optional[StepWrite]
    policy: Optional[str]
    recorded: Optional[str] = None  # the child a replayed enqueue recorded: nothing to write


def enqueue_with_options(engine: Engine, options: EnqueueOptions, args: Tuple[Any, ...],
                         kwargs: Dict[str, Any]) -> str:
    """Enqueue the workflow ``options`` names; its ID (the holder's under "return-existing")."""
    return write(engine, prepare(engine, options, args, kwargs))


def prepare(engine: Engine, options: EnqueueOptions, args: Tuple[Any, ...],
            kwargs: Dict[str, Any]) -> NamedEnqueue:
    """Everything up to the write, on the caller's thread (an async caller's
    operation is numbered before its first ``await``)."""
    ctx = get_context() or DBOSContext()
    if ctx.step_id is not None:
        raise DBOSException("DBOS.enqueue_workflow_with_options cannot be called from inside a step; "
                            "call it from the workflow instead")
    if not isinstance(options, dict):
        raise DBOSException(f"enqueue_workflow_with_options needs EnqueueOptions (a dict), got {options!r}")
    op = Operation.begin(engine, str(options.get("workflow_name")))
    if op is not None and op.record is not None:
        if op.record.error is not None or op.record.child_workflow_id is None:
            op.replay()  # raises what the first execution raised
        return NamedEnqueue({}, None, None, recorded=str(op.record.child_workflow_id))
    resolved = with_ambient(ctx, options, op)
    check_policy(resolved.get("duplication_policy"), resolved.get("deduplication_id"))
    row = enqueue_row(engine.codec, engine.identity.app_name, resolved, args, kwargs)
    carrier = carrier_for(ctx, direct=False)
    if carrier is not None and "otel_context" not in resolved:  # the worker's span joins this trace
        row["attributes"] = with_carrier(row["attributes"], carrier)
    _inherit(row, ctx, "workflow_timeout" in resolved)
    link = op.write(child_workflow_id=row["workflow_uuid"]) if op is not None else None
    return NamedEnqueue(row, link, resolved.get("duplication_policy"))


def write(engine: Engine, prepared: NamedEnqueue) -> str:
    """Write the prepared enqueue; the workflow ID enqueued (or holding its deduplication ID)."""
    if prepared.recorded is not None:
        return prepared.recorded
    row = prepared.row
    try:
        with new_work(prepared.link is None):  # an enqueue from outside a workflow may give up
            workflow_id, found = insert_enqueued(engine.sysdb, row, prepared.link, prepared.policy)
    except DBOSQueueDeduplicatedError as exc:
        record_refusal(engine, prepared.link, exc)  # so a replay is refused alike
        raise
    if found is not None and not found.created and found.name != row["name"]:
        raise DBOSConflictingWorkflowError(workflow_id, f"it runs {found.name}, not {row['name']}")
    work_arrived(row["queue_name"])
    return workflow_id


def with_ambient(ctx: DBOSContext, options: EnqueueOptions,
                 op: Optional[Operation]) -> EnqueueOptions:
    """``options``, with what they leave unset (None counts as unset) taken from the context."""
    resolved: Dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    ambient = current_options()
    chosen_id = ctx.take_workflow_id()
    if chosen_id is None and op is not None:
        chosen_id = f"{op.workflow.workflow_id}-{op.function_id}"  # the same on every replay
    fallbacks: Dict[str, Any] = {
        "workflow_id": chosen_id,
        "deduplication_id": ambient.deduplication_id,
        "duplication_policy": ambient.duplication_policy,
        "priority": ambient.priority,
        "queue_partition_key": ambient.queue_partition_key,
        "delay_seconds": ambient.delay_seconds,
        "authenticated_user": ctx.authenticated_user,
        "authenticated_roles": ctx.authenticated_roles,
    }
    timeout_ms = ctx.extras.get(TIMEOUT_KEY)
    if timeout_ms is not None:
        fallbacks["workflow_timeout"] = timeout_ms / 1000
    for key, value in fallbacks.items():
        if key not in resolved and value is not None:
            resolved[key] = value
    if resolved.get("queue_partition_key") is not None and resolved.get("deduplication_id") is not None:
        raise DBOSException("Deduplication is not supported for partitioned queues")
    return resolved  # type: ignore[return-value]


def _inherit(row: Dict[str, Any], ctx: DBOSContext, has_timeout: bool) -> None:
    """A child enqueued from a workflow: its parent, and the parent's deadline unless it has a timeout."""
    if ctx.run is None:
        return
    row["parent_workflow_id"] = ctx.run.workflow_id
    if not has_timeout and TIMEOUT_KEY not in ctx.extras:
        row["workflow_deadline_epoch_ms"] = ctx.run.deadline_ms
