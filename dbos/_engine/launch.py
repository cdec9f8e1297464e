"""Preparing a workflow's start: its ID, its row, and its place in a parent.

Nothing is written here: ``prepare`` returns a ``Launch`` that the caller
starts (``workflow.py``), enqueues (``_queues``) or runs in the background,
and a value that cannot be serialized fails now, before anything exists.
A child started from a workflow is two operations of its parent: the start,
checkpointed with the child's row in one transaction, and, for a direct
call, the child's result.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Optional, Tuple

from .._clock import now_ms
from .._sysdb.ids import check_workflow_id
from .._sysdb.records import StartResult, StepWrite
from ..error import DBOSConflictingWorkflowError, DBOSException, DBOSWorkflowCancelledError
from .attributes import current_attributes
from .context import DBOSContext, WorkflowRun, get_context
from .deadline import timeout_and_deadline
from .engine import Engine
from .operation import Operation
from .registry import FunctionInfo
from .roles import check_roles, required_roles_of
from .tracing import carrier_for, parent_from, with_carrier

GET_RESULT = "DBOS.getResult"


@dataclass
class Launch:
    """Everything known about a workflow before its row is written."""

    info: FunctionInfo
    workflow_id: str
    args: Tuple[Any, ...]
    kwargs: Dict[str, Any]
    caller: DBOSContext
    row: Dict[str, Any] = field(default_factory=dict)
    parent: Optional[WorkflowRun] = None
    link: Optional[StepWrite] = None  # the start's checkpoint in the parent
    result: Optional[Operation] = None  # the parent's operation for a direct call's result
    direct: bool = False  # called, not started: its caller gets its outcome (else the log does)
    # The trace context its span continues when it runs elsewhere (None: the current one).
    trace: Any = None
    queue_name: Optional[str] = None

    def new_run(self) -> WorkflowRun:
        """The state of a first execution of this workflow."""
        return WorkflowRun(self.workflow_id, self.info.name,
                           deadline_ms=self.row.get("workflow_deadline_epoch_ms"),
                           serialization=self.row.get("serialization"))


def prepare(engine: Engine, info: FunctionInfo, args: Tuple[Any, ...], kwargs: Dict[str, Any],
            *, direct: bool) -> Launch:
    """Choose the ID, take the parent's operations, and build the row."""
    ctx = get_context() or DBOSContext()
    if ctx.step_id is not None:
        raise DBOSException(
            f"Workflow {info.name} cannot be started from inside a step or transaction; "
            "call it from the workflow instead"
        )
    check_workflow_id(ctx.next_workflow_id)  # set by SetWorkflowID, an HTTP header, a debouncer
    caller = ctx
    if required_roles_of(info):
        # The launch's own copy: a role this workflow assumes must not stay in
        # the caller's context. Without roles nothing is changed, so no copy.
        caller = replace(ctx)
        check_roles(info, caller)
    launch = Launch(info, "", args, kwargs, caller, parent=caller.run, direct=direct)
    recorded_child = _in_parent(engine, launch, direct) if launch.parent else None
    chosen = ctx.take_workflow_id()
    launch.workflow_id = recorded_child or chosen or _default_id(launch)
    if launch.link is not None:
        launch.link = replace(launch.link, child_workflow_id=launch.workflow_id, started_at_ms=now_ms())
    launch.row = _status_row(engine, launch)
    attributes = current_attributes(caller)
    carrier = carrier_for(caller, direct)
    if carrier is not None:  # where it runs, or after a crash, its span joins this trace
        attributes = with_carrier(attributes, carrier)
        launch.trace = parent_from(carrier)
    if attributes is not None:  # only then: a start without them keeps its usual statement
        launch.row["attributes"] = attributes
    return launch


def _in_parent(engine: Engine, launch: Launch, direct: bool) -> Optional[str]:
    """Take the parent's operations; the child an earlier execution started, if any."""
    start = Operation.begin(engine, launch.info.name)
    assert start is not None, "a workflow with a parent runs in its code"
    launch.result = Operation.begin(engine, GET_RESULT) if direct else None
    if start.record is None:
        launch.link = start.write()
        return None
    if start.record.error is not None:
        # The start was refused (a deduplicated enqueue): refused again, as it was.
        raise engine.codec.load_error(start.record.error)
    return start.record.child_workflow_id


def record_refusal(engine: Engine, link: Optional[StepWrite], error: Exception) -> None:
    """A child's start was refused (its enqueue deduplicated): the parent
    checkpoints the error at the start's ID (``link``), so a replay raises it again."""
    if link is None:
        return
    refused = replace(link, child_workflow_id=None, error=engine.codec.dump_error(error),
                      completed_at_ms=now_ms())
    if engine.sysdb.record_step(refused) == "CANCELLED":
        raise DBOSWorkflowCancelledError(f"Workflow {refused.workflow_id} was cancelled")


def _default_id(launch: Launch) -> str:
    if launch.parent is not None and launch.link is not None:
        return f"{launch.parent.workflow_id}-{launch.link.function_id}"
    return uuid4_text()


def uuid4_text() -> str:
    """``str(uuid.uuid4())``, without the UUID object that costs twice as much to build."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _status_row(engine: Engine, launch: Launch) -> Dict[str, Any]:
    info, caller, stamp = launch.info, launch.caller, now_ms()
    inherited = launch.parent.deadline_ms if launch.parent else None
    timeout_ms, deadline_ms = timeout_and_deadline(caller, inherited, stamp)
    class_name, config_name, args = split_target(info, launch.args)
    roles = caller.authenticated_roles
    codec = engine.codec.for_stored(stored_format(info, launch.parent))
    row = {
        "workflow_uuid": launch.workflow_id,
        "status": "PENDING",
        "name": info.name,
        "class_name": class_name,
        "config_name": config_name,
        "authenticated_user": caller.authenticated_user,
        "assumed_role": caller.assumed_role,
        "authenticated_roles": json.dumps(roles) if roles is not None else None,
        "inputs": codec.dump_inputs(args, launch.kwargs, workflow_name=info.name),
        "executor_id": engine.identity.executor_id,
        "application_version": engine.identity.app_version,
        "application_name": engine.identity.app_name,
        "application_id": engine.identity.app_id,
        "created_at": stamp,
        "updated_at": stamp,
        "workflow_timeout_ms": timeout_ms,
        "workflow_deadline_epoch_ms": deadline_ms,
        "recovery_attempts": 1,
        # Only compared for equality: 128 random bits, without a UUID object's cost.
        "owner_xid": os.urandom(16).hex(),
        "parent_workflow_id": launch.parent.workflow_id if launch.parent else None,
    }
    if codec.column is not None:  # only then: the configured format keeps its usual statement
        row["serialization"] = codec.column
    return row


def stored_format(info: FunctionInfo, parent: Optional[WorkflowRun]) -> Optional[str]:
    """A workflow's stored format: its decorator's, else its parent's (None: the configured one)."""
    if info.serialization is not None:
        return info.serialization
    return parent.serialization if parent is not None else None


def split_target(info: FunctionInfo, args: Tuple[Any, ...]) -> Tuple[Optional[str], Optional[str], Tuple[Any, ...]]:
    """The class and instance a method runs on, and the arguments that get stored."""
    if info.method_kind == "instance":
        config_name = getattr(args[0], "config_name", None)
        return info.class_name, config_name, args[1:]
    if info.method_kind == "class":
        return info.class_name, None, args[1:]
    if info.method_kind is None and _looks_like_method(info, args):
        raise DBOSException(
            f"Function {info.name} appears to be a method of an instance that is not "
            "registered: decorate its class with @DBOS.dbos_class() and derive it from "
            "DBOSConfiguredInstance"
        )
    return None, None, args


def _looks_like_method(info: FunctionInfo, args: Tuple[Any, ...]) -> bool:
    return bool(args) and _first_parameter_is_self(info.func)


@functools.lru_cache(maxsize=1024)
def _first_parameter_is_self(func: Callable[..., Any]) -> bool:
    # Cached: inspect.signature costs more than the rest of a start's Python work.
    try:
        params = list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return False
    return bool(params) and params[0] == "self"


def check_same_function(launch: Launch, found: StartResult) -> None:
    """A workflow ID already taken must name the same function, class and instance."""
    expected = (launch.row["name"], launch.row["class_name"], launch.row["config_name"])
    actual = (found.name, found.class_name, found.config_name)
    if expected != actual:
        raise DBOSConflictingWorkflowError(
            launch.workflow_id,
            f"it was started as {_describe(actual)}, not {_describe(expected)}",
        )


def _describe(target: Tuple[Optional[str], Optional[str], Optional[str]]) -> str:
    name, class_name, config_name = target
    where = f" of {class_name}" if class_name else ""
    where += f" (instance {config_name})" if config_name else ""
    return f"{name}{where}"
