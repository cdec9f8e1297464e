"""Running workflows durably: start as an upsert, run the body, record the outcome.

A start is one statement that inserts the workflow's row or finds the one
already there (``launch.py`` prepares it). Only the call that inserted it
runs the body; every other caller waits for the recorded outcome. A body
that finds its row no longer PENDING when it finishes (cancelled, taken
over) "parks": it returns whatever outcome the row eventually records.
"""

from __future__ import annotations

import functools
import logging
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Dict, Optional, Tuple, TypeVar

from .._portable_json import PortableWorkflowError
from .._serialization import Codec
from .._status import ACTIVE_STATUSES
from .._sysdb.outage import new_work
from .._sysdb.records import Outcome
from ..error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded,
    DBOSException,
    DBOSSerializationError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowConflictIDError,
)
from .context import WorkflowRun, reset_context, set_context
from .engine import Engine, get_engine, peek_engine
from . import metrics
from .launch import Launch, check_same_function, prepare
from .operation import settle
from .registry import FunctionInfo, register_function, wrapper_for
from .tracing import Traced, span
from .validation import ValidateArgsCallable, resolve_validator
from .waiting import Waitable, watching

F = TypeVar("F", bound=Callable[..., Any])

PARK = (DBOSWorkflowCancelledError, DBOSWorkflowConflictIDError)

logger = logging.getLogger("dbos")


# ----------------------------------------------------------------------
# Outcomes
# ----------------------------------------------------------------------


# The first look again of a wait for an outcome nothing wakes.
FIRST_POLL_S = 0.005


def wait_outcome(engine: Waitable, workflow_id: str, polling_interval_sec: float = 1.0) -> Outcome:
    """Block until the workflow has a final outcome (woken at once by local runs).

    Where nothing wakes the wait (another process finishes the workflow, and
    no LISTEN), it looks again after 5 ms, then twice as long each time up
    to ``polling_interval_sec``: a short workflow's result comes back in
    milliseconds, a long one's costs a read a second.
    """
    delay = min(FIRST_POLL_S, polling_interval_sec)
    with watching(engine, [workflow_id], None) as watch:
        while True:
            outcome = engine.sysdb.workflow_outcome(workflow_id)
            if outcome is not None and outcome.status not in ACTIVE_STATUSES:
                return outcome
            watch.event.wait(delay)
            watch.event.clear()
            delay = min(delay * 2, polling_interval_sec)


async def wait_outcome_async(engine: Engine, workflow_id: str,
                             polling_interval_sec: float = 1.0) -> Outcome:
    return await engine.in_pool(wait_outcome, engine, workflow_id, polling_interval_sec)


def decode_outcome(codec: Codec, workflow_id: str, outcome: Outcome) -> Any:
    """The recorded result, or the recorded error raised."""
    codec = codec.for_stored(outcome.serialization)
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
            return decode_outcome(engine.codec, workflow_id, self.outcome)
        if self.error is not None:
            raise self.error
        return self.value


def conclude(engine: Engine, run: WorkflowRun, value: Any, error: Optional[Exception]) -> Ended:
    """Record the body's outcome; a return value that cannot be stored is an error."""
    if engine.closed:
        return _left_pending(run)
    try:
        settle(engine, run, stop_if_cancelled=False)  # the row's status decides below
    except DBOSException as exc:  # another execution took the message: the body's receive failed
        value, error = None, error or exc
    codec = engine.codec.for_stored(run.serialization)
    if error is None:
        what = f"the output of workflow {run.name!r} ({run.workflow_id})"
        try:
            output = codec.dump_value(value, what=what)
        except (DBOSSerializationError, PortableWorkflowError) as exc:
            error = exc
        else:
            return _record_or_park(engine, run, Ended(Outcome("SUCCESS", output, None), True, value))
    text = codec.dump_error(error)
    return _record_or_park(engine, run, Ended(Outcome("ERROR", None, text), True, error=error))


def _left_pending(run: WorkflowRun) -> Ended:
    """DBOS shut down while this body ran: what it met after that (steps refused,
    a closed database) is no outcome, so nothing is recorded and the workflow
    stays PENDING for recovery."""
    error = DBOSException(f"DBOS shut down while workflow {run.name!r} ({run.workflow_id}) was running; "
                          "it stays PENDING and is recovered at the next launch")
    return Ended(Outcome("PENDING", None, None), True, error=error)


def _record_or_park(engine: Engine, run: WorkflowRun, ended: Ended) -> Ended:
    """Record the outcome; if the row left PENDING meanwhile, adopt its outcome."""
    outcome = ended.outcome
    if not engine.sysdb.record_outcome(run.workflow_id, outcome.status, outcome.output, outcome.error):
        ended = Ended(wait_outcome(engine, run.workflow_id))
    engine.waiters.wake(run.workflow_id)
    return ended


# ----------------------------------------------------------------------
# Running the body
# ----------------------------------------------------------------------


def execute_sync(engine: Engine, launch: Launch, run: WorkflowRun) -> Any:
    """Run a sync workflow body here and return (or raise) its outcome."""
    token = set_context(launch.caller.workflow_child(run))
    engine.track(run.workflow_id, run.deadline_ms)
    metrics.workflow_event(run.name, "started")
    try:
        with _span(engine, launch, run) as traced:
            ended = _run_sync(engine, launch, run)
            _trace_failure(traced, ended)
    finally:
        engine.untrack(run.workflow_id)
        reset_context(token)
    metrics.workflow_ended(run.name, ended.outcome.status)
    _log_failure(launch, run, ended)
    return ended.result(engine, run.workflow_id)


def _span(engine: Engine, launch: Launch, run: WorkflowRun) -> ContextManager[Optional[Traced]]:
    return span(run.name, "workflow", run.workflow_id, launch.caller, engine.identity,
                launch.trace, launch.queue_name)


def _trace_failure(traced: Optional[Traced], ended: Ended) -> None:
    # The body's exception is caught to record it, so the span must be told.
    if traced is not None and ended.error is not None:
        traced.failed(ended.error)


def _log_failure(launch: Launch, run: WorkflowRun, ended: Ended) -> None:
    """One line for a workflow that failed in the background: no caller may be
    waiting for its outcome, and an operator must see it."""
    if launch.direct or not ended.own or ended.outcome.status != "ERROR":
        return
    error = ended.error
    reason = f"{type(error).__name__}: {error}" if error is not None else "an error"
    logger.error(f"Workflow {run.workflow_id} ({run.name}) failed: {reason}")


def _run_sync(engine: Engine, launch: Launch, run: WorkflowRun) -> Ended:
    try:
        value = launch.info.func(*launch.args, **launch.kwargs)
    except PARK:
        return Ended(wait_outcome(engine, run.workflow_id))
    except Exception as exc:
        return conclude(engine, run, None, exc)
    return conclude(engine, run, value, None)


async def execute_async(engine: Engine, launch: Launch, run: WorkflowRun) -> Any:
    token = set_context(launch.caller.workflow_child(run))
    engine.track(run.workflow_id, run.deadline_ms)
    metrics.workflow_event(run.name, "started")
    try:
        with _span(engine, launch, run) as traced:
            ended = await _run_async(engine, launch, run)
            _trace_failure(traced, ended)
    finally:
        engine.untrack(run.workflow_id)
        reset_context(token)
    metrics.workflow_ended(run.name, ended.outcome.status)
    _log_failure(launch, run, ended)
    return ended.result(engine, run.workflow_id)


async def _run_async(engine: Engine, launch: Launch, run: WorkflowRun) -> Ended:
    try:
        value = await launch.info.func(*launch.args, **launch.kwargs)
    except PARK:
        return Ended(await wait_outcome_async(engine, run.workflow_id))
    except Exception as exc:
        return await engine.in_pool(conclude, engine, run, None, exc)
    return await engine.in_pool(conclude, engine, run, value, None)


def submit(engine: Engine, launch: Launch, run: WorkflowRun) -> "Future[Any]":
    """Run a workflow body in the background: the pool (sync) or the loop (async)."""
    if launch.info.is_async:
        return engine.background.submit(execute_async(engine, launch, run))
    return engine.pool.submit(execute_sync, engine, launch, run)


# ----------------------------------------------------------------------
# Direct calls of a decorated workflow
# ----------------------------------------------------------------------


def make_workflow(func: F, name: Optional[str], max_recovery_attempts: Optional[int],
                  validate_args: Optional[ValidateArgsCallable] = None,
                  serialization: Optional[str] = None) -> F:
    """What ``@DBOS.workflow()`` makes of ``func``: a call of it starts a durable
    workflow, stored in ``serialization`` (None: the parent's, else the configured one)."""
    info = register_function(func, name, "workflow", max_recovery_attempts=max_recovery_attempts,
                             serialization=serialization)
    info.validate_args = resolve_validator(info, validate_args)
    if info.is_async:

        @functools.wraps(func)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            return await call_async(get_engine(f"Workflow {info.name}"), info, args, kwargs)

        return wrapper_for(info, run_async)  # type: ignore[return-value]

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        # peek first: get_engine's message would be formatted on every call.
        engine = peek_engine() or get_engine(f"Workflow {info.name}")
        return call_sync(engine, info, args, kwargs)

    return wrapper_for(info, run)  # type: ignore[return-value]


def call_sync(engine: Engine, info: FunctionInfo, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    launch = prepare(engine, info, args, kwargs, direct=True)
    if launch.result is not None and launch.result.replaying:
        return launch.result.replay()
    with new_work(launch.link is None):  # a top-level start may give up during an outage
        found = engine.sysdb.start_workflow(launch.row, launch.link)
    try:
        if found.created:
            result = execute_sync(engine, launch, launch.new_run())
        else:
            check_same_function(launch, found)
            result = decode_outcome(engine.codec, launch.workflow_id, wait_outcome(engine, launch.workflow_id))
    except Exception as exc:
        record_result_in_parent(launch, None, exc)
        raise
    record_result_in_parent(launch, result, None)
    return result


async def call_async(engine: Engine, info: FunctionInfo, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    launch = prepare(engine, info, args, kwargs, direct=True)
    if launch.result is not None and launch.result.replaying:
        return launch.result.replay()
    with new_work(launch.link is None):
        found = await engine.in_pool(engine.sysdb.start_workflow, launch.row, launch.link)
    try:
        if found.created:
            result = await execute_async(engine, launch, launch.new_run())
        else:
            check_same_function(launch, found)
            outcome = await wait_outcome_async(engine, launch.workflow_id)
            result = decode_outcome(engine.codec, launch.workflow_id, outcome)
    except Exception as exc:
        await engine.in_pool(record_result_in_parent, launch, None, exc)
        raise
    await engine.in_pool(record_result_in_parent, launch, result, None)
    return result


def record_result_in_parent(launch: Launch, result: Any, error: Optional[BaseException]) -> None:
    """Checkpoint a child's result in the parent, so replay need not wait for it."""
    op = launch.result
    if op is None:
        return
    if error is not None:
        op.fail(error, child_workflow_id=launch.workflow_id)
    else:
        op.succeed(result, what="a child workflow's result", child_workflow_id=launch.workflow_id)
