"""Running workflows durably: start as an upsert, run the body, record the outcome.

A start is one statement that inserts the workflow's row or finds the one
already there. Only the call that inserted it runs the body; every other
caller waits for the recorded outcome. A body that finds its row no longer
PENDING when it finishes (cancelled, taken over) "parks": it returns whatever
outcome the row eventually records.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

from .context import (
    DBOSContext,
    WorkflowRun,
    current_run,
    get_context,
    reset_context,
    set_context,
)
from .deadline import timeout_and_deadline
from .engine import Engine
from ..error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded,
    DBOSConflictingWorkflowError,
    DBOSException,
    DBOSNotAuthorizedError,
    DBOSSerializationError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowConflictIDError,
)
from .registry import FunctionInfo, get_registry
from .._serialization import Codec
from .._status import ACTIVE_STATUSES
from .._sysdb.records import Outcome, StartResult, StepRecord, StepWrite
from .._sysdb.workflows import now_ms

T = TypeVar("T")

GET_RESULT = "DBOS.getResult"
PARK = (DBOSWorkflowCancelledError, DBOSWorkflowConflictIDError)


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
    link: Optional[StepWrite] = None
    result_id: Optional[int] = None
    replayed_result: Optional[StepRecord] = None

    def new_run(self) -> WorkflowRun:
        """The state of a first execution of this workflow."""
        return WorkflowRun(self.workflow_id, self.info.name,
                           deadline_ms=self.row.get("workflow_deadline_epoch_ms"))


# ----------------------------------------------------------------------
# Preparing a start
# ----------------------------------------------------------------------


def prepare(engine: Engine, info: FunctionInfo, args: Tuple[Any, ...], kwargs: Dict[str, Any],
            *, direct: bool) -> Launch:
    """Choose the ID, checkpoint bookkeeping in a parent, and build the row.

    Nothing is written here; a value that cannot be serialized fails now.
    """
    ctx = get_context() or DBOSContext()
    if ctx.step_id is not None:
        raise DBOSException(
            f"Workflow {info.name} cannot be started from inside a step or transaction; "
            "call it from the workflow instead"
        )
    caller = ctx
    if required_roles_of(info):
        # The launch's own copy: a role this workflow assumes must not stay in
        # the caller's context. Without roles nothing is changed, so no copy.
        caller = replace(ctx)
        check_roles(info, caller)
    parent = caller.run
    launch = Launch(info, "", args, kwargs, caller, parent=parent)
    recorded_child = _parent_bookkeeping(launch, direct) if parent else None
    chosen = ctx.take_workflow_id()
    launch.workflow_id = recorded_child or chosen or _default_id(launch)
    if launch.link is not None:
        launch.link = _with_child(launch.link, launch.workflow_id)
    launch.row = _status_row(engine, launch)
    return launch


def _parent_bookkeeping(launch: Launch, direct: bool) -> Optional[str]:
    parent = launch.parent
    assert parent is not None
    start_id = parent.next_function_id()
    launch.result_id = parent.next_function_id() if direct else None
    record = parent.recorded_step(start_id, launch.info.name)
    if launch.result_id is not None:
        launch.replayed_result = parent.recorded_step(launch.result_id, GET_RESULT)
    if record is None:
        launch.link = StepWrite(parent.workflow_id, start_id, launch.info.name)
        return None
    return record.child_workflow_id


def _with_child(link: StepWrite, child_id: str) -> StepWrite:
    return StepWrite(link.workflow_id, link.function_id, link.function_name,
                     child_workflow_id=child_id, started_at_ms=now_ms())


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
    return {
        "workflow_uuid": launch.workflow_id,
        "status": "PENDING",
        "name": info.name,
        "class_name": class_name,
        "config_name": config_name,
        "authenticated_user": caller.authenticated_user,
        "assumed_role": caller.assumed_role,
        "authenticated_roles": json.dumps(roles) if roles is not None else None,
        "inputs": engine.codec.dump_inputs(args, launch.kwargs, workflow_name=info.name),
        "executor_id": engine.identity.executor_id,
        "application_version": engine.identity.app_version,
        "application_name": engine.identity.app_name,
        "created_at": stamp,
        "updated_at": stamp,
        "workflow_timeout_ms": timeout_ms,
        "workflow_deadline_epoch_ms": deadline_ms,
        "recovery_attempts": 1,
        # Only compared for equality: 128 random bits, without a UUID object's cost.
        "owner_xid": os.urandom(16).hex(),
        "parent_workflow_id": launch.parent.workflow_id if launch.parent else None,
    }


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


def required_roles_of(info: FunctionInfo) -> Optional[List[str]]:
    return info.required_roles or _class_default_roles(info)


def check_roles(info: FunctionInfo, caller: DBOSContext) -> None:
    """Enforce ``@DBOS.required_roles``; the first matching role is assumed."""
    required = required_roles_of(info)
    if not required:
        return
    held = caller.authenticated_roles or []
    for role in required:
        if role in held:
            caller.assumed_role = role
            return
    raise DBOSNotAuthorizedError(
        f"Function {info.name} requires one of the roles {required}, but the caller "
        f"({caller.authenticated_user or 'anonymous'}) has {held}"
    )


def _class_default_roles(info: FunctionInfo) -> Optional[List[str]]:
    if info.class_name is None:
        return None
    cls = get_registry().classes.get(info.class_name)
    roles: Optional[List[str]] = getattr(cls, "dbos_default_required_roles", None)
    return roles


# ----------------------------------------------------------------------
# Outcomes
# ----------------------------------------------------------------------


def check_same_function(launch: Launch, found: StartResult) -> None:
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


def wait_outcome(engine: Engine, workflow_id: str, polling_interval_sec: float = 1.0) -> Outcome:
    """Block until the workflow has a final outcome (woken at once by local runs)."""
    while True:
        event = engine.waiters.register(workflow_id)
        try:
            outcome = engine.sysdb.workflows.outcome(workflow_id)
            if outcome is not None and outcome.status not in ACTIVE_STATUSES:
                return outcome
            event.wait(polling_interval_sec)
        finally:
            engine.waiters.unregister(workflow_id, event)


async def wait_outcome_async(engine: Engine, workflow_id: str,
                             polling_interval_sec: float = 1.0) -> Outcome:
    return await engine.in_pool(wait_outcome, engine, workflow_id, polling_interval_sec)


def outcome_value(engine: Engine, workflow_id: str, outcome: Outcome) -> Any:
    """The recorded result, or the recorded error raised."""
    return decode_outcome(engine.codec, workflow_id, outcome)


def decode_outcome(codec: Codec, workflow_id: str, outcome: Outcome) -> Any:
    if outcome.status == "SUCCESS":
        return codec.load_value(outcome.output)
    if outcome.status == "ERROR":
        raise codec.load_error(outcome.error or "")
    if outcome.status == "CANCELLED":
        raise DBOSAwaitedWorkflowCancelledError(workflow_id)
    raise DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded(workflow_id)


@dataclass
class Ended:
    """How one execution of a body ended.

    ``own`` is True when this execution recorded the outcome: its caller then
    gets the body's own value or exception (with its traceback), not a copy
    read back from the database.
    """

    outcome: Outcome
    own: bool = False
    value: Any = None
    error: Optional[BaseException] = None

    def result(self, engine: Engine, workflow_id: str) -> Any:
        if not self.own:
            return outcome_value(engine, workflow_id, self.outcome)
        if self.error is not None:
            raise self.error
        return self.value


def conclude(engine: Engine, run: WorkflowRun, value: Any, error: Optional[Exception]) -> Ended:
    """Record the body's outcome; a return value that cannot be stored is an error."""
    if error is None:
        what = f"the output of workflow {run.name!r} ({run.workflow_id})"
        try:
            output = engine.codec.dump_value(value, what=what)
        except DBOSSerializationError as exc:
            error = exc
        else:
            return finish_or_park(engine, run, Ended(Outcome("SUCCESS", output, None), True, value))
    text = engine.codec.dump_error(error)
    return finish_or_park(engine, run, Ended(Outcome("ERROR", None, text), True, error=error))


def finish_or_park(engine: Engine, run: WorkflowRun, ended: Ended) -> Ended:
    """Record the outcome; if the row left PENDING meanwhile, adopt its outcome."""
    outcome = ended.outcome
    if not engine.sysdb.workflows.finish(run.workflow_id, outcome.status, outcome.output, outcome.error):
        ended = Ended(wait_outcome(engine, run.workflow_id))
    engine.waiters.notify(run.workflow_id)
    return ended


# ----------------------------------------------------------------------
# Running the body
# ----------------------------------------------------------------------


def body_context(caller: DBOSContext, run: WorkflowRun) -> DBOSContext:
    return caller.workflow_child(run)


def execute_sync(engine: Engine, launch: Launch, run: WorkflowRun) -> Any:
    """Run a sync workflow body here and return (or raise) its outcome."""
    token = set_context(body_context(launch.caller, run))
    engine.track(run.workflow_id, run.deadline_ms)
    try:
        ended = _run_sync(engine, launch, run)
    finally:
        engine.untrack(run.workflow_id)
        reset_context(token)
    return ended.result(engine, run.workflow_id)


def _run_sync(engine: Engine, launch: Launch, run: WorkflowRun) -> Ended:
    try:
        value = launch.info.func(*launch.args, **launch.kwargs)
    except PARK:
        return Ended(wait_outcome(engine, run.workflow_id))
    except Exception as exc:
        return conclude(engine, run, None, exc)
    return conclude(engine, run, value, None)


async def execute_async(engine: Engine, launch: Launch, run: WorkflowRun) -> Any:
    token = set_context(body_context(launch.caller, run))
    engine.track(run.workflow_id, run.deadline_ms)
    try:
        ended = await _run_async(engine, launch, run)
    finally:
        engine.untrack(run.workflow_id)
        reset_context(token)
    return ended.result(engine, run.workflow_id)


async def _run_async(engine: Engine, launch: Launch, run: WorkflowRun) -> Ended:
    try:
        value = await launch.info.func(*launch.args, **launch.kwargs)
    except PARK:
        return Ended(await wait_outcome_async(engine, run.workflow_id))
    except Exception as exc:
        return await engine.in_pool(conclude, engine, run, None, exc)
    return await engine.in_pool(conclude, engine, run, value, None)


# ----------------------------------------------------------------------
# Direct calls of a decorated workflow
# ----------------------------------------------------------------------


def call_sync(engine: Engine, info: FunctionInfo, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    launch = prepare(engine, info, args, kwargs, direct=True)
    if launch.replayed_result is not None:
        return replayed(engine, launch.replayed_result)
    found = engine.sysdb.workflows.start(launch.row, launch.link)
    try:
        if found.created:
            result = execute_sync(engine, launch, launch.new_run())
        else:
            check_same_function(launch, found)
            result = outcome_value(engine, launch.workflow_id, wait_outcome(engine, launch.workflow_id))
    except Exception as exc:
        record_result_in_parent(engine, launch, None, exc)
        raise
    record_result_in_parent(engine, launch, result, None)
    return result


async def call_async(engine: Engine, info: FunctionInfo, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    launch = prepare(engine, info, args, kwargs, direct=True)
    if launch.replayed_result is not None:
        return replayed(engine, launch.replayed_result)
    found = await engine.in_pool(engine.sysdb.workflows.start, launch.row, launch.link)
    try:
        if found.created:
            result = await execute_async(engine, launch, launch.new_run())
        else:
            check_same_function(launch, found)
            outcome = await wait_outcome_async(engine, launch.workflow_id)
            result = outcome_value(engine, launch.workflow_id, outcome)
    except Exception as exc:
        await engine.in_pool(record_result_in_parent, engine, launch, None, exc)
        raise
    await engine.in_pool(record_result_in_parent, engine, launch, result, None)
    return result


def replayed(engine: Engine, record: StepRecord) -> Any:
    if record.error is not None:
        raise engine.codec.load_error(record.error)
    return engine.codec.load_value(record.output)


def record_result_in_parent(engine: Engine, launch: Launch, result: Any,
                            error: Optional[BaseException]) -> None:
    """Checkpoint a child's result in the parent, so replay need not wait for it."""
    if launch.parent is None or launch.result_id is None:
        return
    write = StepWrite(
        launch.parent.workflow_id, launch.result_id, GET_RESULT,
        output=None if error else engine.codec.dump_value(result, what="a child workflow's result"),
        error=engine.codec.dump_error(error) if error else None,
        child_workflow_id=launch.workflow_id,
    )
    checkpoint_step(engine, write)


def checkpoint_step(engine: Engine, write: StepWrite) -> None:
    """Record a step, then the cancellation check that rides on that write."""
    if engine.sysdb.workflows.checkpoint(write) == "CANCELLED":
        raise DBOSWorkflowCancelledError(f"Workflow {write.workflow_id} was cancelled")


def raise_if_cancelled(run: WorkflowRun, status: str) -> None:
    """The cancellation check that rides on every checkpoint."""
    if status == "CANCELLED":
        raise DBOSWorkflowCancelledError(f"Workflow {run.workflow_id} was cancelled")


def wrapper_for(info: FunctionInfo, call: Callable[..., Any]) -> Callable[..., Any]:
    """Attach the registry record to a decorated function."""
    setattr(call, "dbos_function_name", info.name)
    setattr(call, "__dbos_info__", info)
    info.wrapper = call
    return call


def recorded_operation(engine: Engine, name: str, work: Callable[[], T]) -> T:
    """Run a DBOS operation; inside a workflow it is a step, done once and replayed.

    Inside a transaction it is refused: its effects could not be rolled back
    with the transaction's.
    """
    reserved = reserve_operation(name)
    if reserved is None:
        return work()
    run, function_id, record = reserved
    if record is not None:
        value: T = replayed(engine, record)
        return value
    return _run_and_record(engine, run, function_id, name, work)


async def recorded_operation_async(engine: Engine, name: str, work: Callable[[], T]) -> T:
    """``recorded_operation`` for async code; the step ID is taken before the first await."""
    reserved = reserve_operation(name)
    if reserved is None:
        return await engine.in_pool(work)
    run, function_id, record = reserved
    if record is not None:
        value: T = replayed(engine, record)
        return value
    return await engine.in_pool(_run_and_record, engine, run, function_id, name, work)


def reserve_operation(name: str) -> Optional[Tuple[WorkflowRun, int, Optional[StepRecord]]]:
    """The step ID an operation takes in the running workflow, and its record if replaying."""
    ctx = get_context()
    if ctx is not None and ctx.in_transaction:
        raise DBOSException(f"{name} cannot be called from within a transaction")
    run = current_run()
    if run is None:
        return None
    function_id = run.next_function_id()
    return run, function_id, run.recorded_step(function_id, name)


def _run_and_record(engine: Engine, run: WorkflowRun, function_id: int, name: str,
                    work: Callable[[], T]) -> T:
    write = StepWrite(run.workflow_id, function_id, name, started_at_ms=now_ms())
    try:
        value = work()
    except Exception as exc:
        checkpoint_step(engine, replace(write, error=engine.codec.dump_error(exc)))
        raise
    checkpoint_step(engine, replace(write, output=engine.codec.dump_value(value, what=f"the result of {name}")))
    return value
