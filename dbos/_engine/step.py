"""Steps: run once, checkpoint the outcome, replay it afterwards.

Outside a workflow (or inside another step) a step is a plain call. Inside
one it is an operation (``operation.py``): a recorded outcome is returned (or
raised) without running the function again; otherwise the function runs,
with retries if asked, and its outcome is checkpointed. An async step may
also have a timeout per attempt and be preempted by its workflow's
cancellation (``supervisor.py``).

``DBOS.run_step`` runs any callable the same way, without decorating it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import time
from dataclasses import dataclass, fields
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple, TypedDict, TypeVar, Union

from .._status import StepStatus
from ..error import DBOSException, DBOSInvalidArgumentError, DBOSMaxStepRetriesExceeded
from . import metrics
from .context import DBOSContext, current_run, get_context, reset_context, set_context
from .engine import Engine, get_engine, peek_engine
from .operation import Operation
from .registry import FunctionInfo, register_function, register_temp_workflow, wrapper_for
from .roles import assumed_role
from .supervisor import Supervisor, supervising
from .tracing import Traced, span

logger = logging.getLogger("dbos")

MAX_BACKOFF_SEC = 3600.0
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


@dataclass(frozen=True)
class StepPolicy:
    """How a step runs: its retries and, for an async step, its timeout and preemption."""

    retries_allowed: bool = False
    interval_seconds: float = 1.0
    max_attempts: int = 3
    backoff_rate: float = 2.0
    should_retry: Optional[Callable[[BaseException], Union[bool, Awaitable[bool]]]] = None
    preemptible: bool = False
    timeout_seconds: Optional[float] = None

    @property
    def attempts(self) -> int:
        return max(1, self.max_attempts) if self.retries_allowed else 1

    def delay(self, attempt: int) -> float:
        return float(min(self.interval_seconds * self.backoff_rate ** attempt, MAX_BACKOFF_SEC))

    def check(self, name: str, is_async: bool) -> None:
        """Refuse a timeout or preemption a step cannot have (before anything runs)."""
        if not is_async and self.preemptible:
            raise DBOSException(
                f"Step {name} is sync, but preemptible=True was given: only an async "
                "step (async def) can be preempted. Make it async or drop preemptible"
            )
        if self.timeout_seconds is None:
            return
        if not is_async:
            raise DBOSException(
                f"Step {name} is sync, but timeout_seconds={self.timeout_seconds!r} was given: "
                "only an async step (async def) can time out. Make it async or drop timeout_seconds"
            )
        if not _positive_finite(self.timeout_seconds):
            raise DBOSInvalidArgumentError(
                "timeout_seconds", self.timeout_seconds,
                f"the timeout of step {name} must be a finite number of seconds greater than 0")


def _positive_finite(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and value > 0


class StepOptions(TypedDict, total=False):
    """The options of ``DBOS.run_step``: ``name`` (default the function's
    qualified name) and those of ``@DBOS.step()``, with the same defaults."""

    name: Optional[str]
    retries_allowed: bool
    interval_seconds: float
    max_attempts: int
    backoff_rate: float
    should_retry: Optional[Callable[[BaseException], Union[bool, Awaitable[bool]]]]
    preemptible: bool
    timeout_seconds: Optional[float]


POLICY_FIELDS = tuple(f.name for f in fields(StepPolicy))


def policy_of(options: Optional[StepOptions]) -> StepPolicy:
    """The policy ``options`` ask for (other keys, like ``name``, are not part of it)."""
    given: Dict[str, Any] = dict(options or {})
    return StepPolicy(**{key: given[key] for key in POLICY_FIELDS if key in given})


# ----------------------------------------------------------------------
# The decorator
# ----------------------------------------------------------------------


def make_step(func: F, name: Optional[str], policy: StepPolicy) -> F:
    """What ``@DBOS.step()`` makes of ``func``: in a workflow, a checkpointed call."""
    policy.check(name or func.__qualname__, inspect.iscoroutinefunction(func))
    info = register_function(func, name, "step", options={"policy": policy})
    if info.is_async:

        @functools.wraps(func)
        async def step_async(*args: Any, **kwargs: Any) -> Any:
            with assumed_role(info):
                if current_run() is None:
                    return await func(*args, **kwargs)
                engine = get_engine(f"Step {info.name}")
                return await call_step_async(engine, info, policy, args, kwargs)

        wrapper: Callable[..., Any] = step_async
    else:

        def call(args: Any, kwargs: Any) -> Any:
            if current_run() is None:
                return func(*args, **kwargs)
            engine = peek_engine() or get_engine(f"Step {info.name}")
            return call_step_sync(engine, info, policy, args, kwargs)

        @functools.wraps(func)
        def step(*args: Any, **kwargs: Any) -> Any:
            # Checked per call: @DBOS.required_roles may be applied after this
            # decorator. Most steps have none and skip the context manager.
            if not info.required_roles:
                return call(args, kwargs)
            with assumed_role(info):
                return call(args, kwargs)

        wrapper = step
    register_temp_workflow(info, wrapper)
    return wrapper_for(info, wrapper)  # type: ignore[return-value]


def step_context(op: Operation, policy: StepPolicy) -> DBOSContext:
    """The context a step runs in: the workflow's caller, the step's own ID and status."""
    max_attempts = policy.attempts if policy.retries_allowed else None
    status = StepStatus(op.function_id, None, max_attempts)
    caller = get_context() or DBOSContext()
    return caller.workflow_child(op.workflow, step_id=op.function_id, step_status=status)


def _exhausted(name: str, policy: StepPolicy, errors: List[Exception]) -> Exception:
    if not policy.retries_allowed:
        return errors[-1]
    return DBOSMaxStepRetriesExceeded(name, policy.max_attempts, errors)


def _keep_storable(engine: Engine, exc: Exception) -> None:
    """Make a retries-exhausted error record as itself.

    One attempt's error that does not survive the serializer would otherwise
    turn the whole ``DBOSMaxStepRetriesExceeded`` into a stand-in; only that
    attempt's error is replaced by its stand-in instead.
    """
    if isinstance(exc, DBOSMaxStepRetriesExceeded):
        exc.errors = [_storable(engine, error) for error in exc.errors]


def _storable(engine: Engine, error: Exception) -> Exception:
    restored = engine.codec.load_error(engine.codec.dump_error(error))
    if type(restored) is type(error) or not isinstance(restored, Exception):
        return error
    return restored


def _log_retry(name: str, attempt: int, policy: StepPolicy, exc: Exception, traced: Optional[Traced]) -> None:
    logger.warning(
        f"Step {name} failed ({type(exc).__name__}: {exc}); retrying "
        f"(attempt {attempt + 2} of {policy.attempts})"
    )
    if traced is not None:
        traced.attempt_failed(attempt + 1, exc, policy.delay(attempt))


# ----------------------------------------------------------------------
# Sync
# ----------------------------------------------------------------------


def run_with_retries(info: FunctionInfo, policy: StepPolicy, ctx: DBOSContext,
                     args: Tuple[Any, ...], kwargs: Dict[str, Any], traced: Optional[Traced] = None) -> Any:
    errors: List[Exception] = []
    for attempt in range(policy.attempts):
        if ctx.step_status is not None and policy.retries_allowed:
            ctx.step_status.current_attempt = attempt + 1
        try:
            return info.func(*args, **kwargs)
        except Exception as exc:
            errors.append(exc)
            if policy.should_retry is not None and not _sync_predicate(policy, exc):
                raise
            if attempt + 1 < policy.attempts:
                _log_retry(info.name, attempt, policy, exc, traced)
                time.sleep(policy.delay(attempt))
    raise _exhausted(info.name, policy, errors)


def _sync_predicate(policy: StepPolicy, exc: Exception) -> bool:
    assert policy.should_retry is not None
    verdict = policy.should_retry(exc)
    if inspect.isawaitable(verdict):
        if inspect.iscoroutine(verdict):
            verdict.close()  # never awaited: close it rather than leak a warning
        raise DBOSException("An async should_retry predicate needs an async step")
    return bool(verdict)


def call_step_sync(engine: Engine, info: FunctionInfo, policy: StepPolicy,
                   args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    op = Operation.begin(engine, info.name)
    if op is None:
        return info.func(*args, **kwargs)
    return perform_sync(op, info, policy, args, kwargs)


def perform_sync(op: Operation, info: FunctionInfo, policy: StepPolicy,
                 args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    """The sync step at ``op``: its recorded outcome, or run now (with retries) and checkpointed."""
    if op.replaying:
        return op.replay()
    op.check_cancelled()
    ctx = step_context(op, policy)
    token = set_context(ctx)
    began = time.monotonic()
    try:
        with span(info.name, "step", op.workflow.workflow_id, ctx, op.engine.identity) as traced:
            value = run_with_retries(info, policy, ctx, args, kwargs, traced)
    except Exception as exc:
        _keep_storable(op.engine, exc)
        op.fail(exc)
        raise
    finally:
        reset_context(token)
        metrics.step_took(info.name, time.monotonic() - began)
    return op.succeed(value, what=f"the output of step {info.name!r}")


# ----------------------------------------------------------------------
# Async
# ----------------------------------------------------------------------


async def run_with_retries_async(info: FunctionInfo, policy: StepPolicy, ctx: DBOSContext,
                                 supervisor: Supervisor, args: Tuple[Any, ...], kwargs: Dict[str, Any],
                                 traced: Optional[Traced] = None) -> Any:
    errors: List[Exception] = []
    for attempt in range(policy.attempts):
        if ctx.step_status is not None and policy.retries_allowed:
            ctx.step_status.current_attempt = attempt + 1
        try:
            return await supervisor.attempt(lambda: info.func(*args, **kwargs))
        except Exception as exc:
            errors.append(exc)
            if policy.should_retry is not None and not await _async_predicate(policy, exc):
                raise
            if attempt + 1 < policy.attempts:
                _log_retry(info.name, attempt, policy, exc, traced)
                await supervisor.pause(policy.delay(attempt))
    raise _exhausted(info.name, policy, errors)


async def _async_predicate(policy: StepPolicy, exc: Exception) -> bool:
    assert policy.should_retry is not None
    verdict = policy.should_retry(exc)
    if inspect.isawaitable(verdict):
        verdict = await verdict
    return bool(verdict)


async def call_step_async(engine: Engine, info: FunctionInfo, policy: StepPolicy,
                          args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    op = Operation.begin(engine, info.name)
    if op is None:
        return await info.func(*args, **kwargs)
    if op.replaying:
        return op.replay()
    op.check_cancelled()
    ctx = step_context(op, policy)
    token = set_context(ctx)
    began = time.monotonic()
    try:
        async with supervising(engine, op.workflow.workflow_id, info.name, policy.timeout_seconds,
                               policy.preemptible) as supervisor:
            with span(info.name, "step", op.workflow.workflow_id, ctx, engine.identity) as traced:
                value = await run_with_retries_async(info, policy, ctx, supervisor, args, kwargs, traced)
    except Exception as exc:  # a preempted step's DBOSWorkflowCancelledError is not recorded
        _keep_storable(engine, exc)
        await asyncio.to_thread(op.fail, exc)
        raise
    finally:
        reset_context(token)
        metrics.step_took(info.name, time.monotonic() - began)
    what = f"the output of step {info.name!r}"
    return await asyncio.to_thread(functools.partial(op.succeed, value, what=what))


# ----------------------------------------------------------------------
# Any callable as a step: DBOS.run_step
# ----------------------------------------------------------------------


def inline_step(options: Optional[StepOptions], func: Callable[..., Any]) -> Tuple[FunctionInfo, StepPolicy]:
    """What ``DBOS.run_step`` runs ``func`` as: a step (not registered) under
    ``options["name"]`` or the function's qualified name."""
    policy = policy_of(options)
    name = (options or {}).get("name") or qualified_name(func)
    info = FunctionInfo(name=name, kind="step", func=func, is_async=_is_async(func))
    policy.check(info.name, info.is_async)
    return info, policy


def qualified_name(func: Callable[..., Any]) -> str:
    """A callable's qualified name; for a ``functools.partial``, its function's."""
    target: Any = func
    while isinstance(target, functools.partial):
        target = target.func
    return str(getattr(target, "__qualname__", None) or type(target).__qualname__)


def _is_async(func: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(getattr(func, "__call__", None))


def run_step(options: Optional[StepOptions], func: Callable[..., Any],
             args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    """``func`` as a step of the running workflow; a plain call outside one. An
    async ``func`` runs on the engine's background loop."""
    refuse_running_loop("run_step")
    info, policy = inline_step(options, func)
    if current_run() is None:
        if not info.is_async:
            return func(*args, **kwargs)
        return _on_background(peek_engine(), lambda: func(*args, **kwargs))
    engine = get_engine(f"Step {info.name}")
    if not info.is_async:
        return call_step_sync(engine, info, policy, args, kwargs)
    return _on_background(engine, lambda: call_step_async(engine, info, policy, args, kwargs))


async def run_step_async(options: Optional[StepOptions], func: Callable[..., Any],
                         args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    """``run_step`` for async code: a sync ``func`` runs on DBOS's thread pool."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError("run_step_async() was called while an event loop is not running. "
                           "Use run_step(...) instead.") from None
    info, policy = inline_step(options, func)
    if current_run() is None:
        return await (func(*args, **kwargs) if info.is_async else _in_thread(func, args, kwargs))
    engine = get_engine(f"Step {info.name}")
    if info.is_async:
        return await call_step_async(engine, info, policy, args, kwargs)
    op = Operation.begin(engine, info.name)  # before the first await: IDs follow the order steps begin
    assert op is not None, "in the workflow found above"
    if op.replaying:
        return op.replay()
    return await engine.in_pool(functools.partial(perform_sync, op, info, policy, args, kwargs))


def refuse_running_loop(api: str) -> None:
    """``RuntimeError`` if ``api()`` (a blocking call) runs on an event loop:
    blocking a running loop on work for that same loop would never return."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(f"{api}() was called while an event loop is running. "
                       f"Use await {api}_async(...) instead.")


def _on_background(engine: Optional[Engine], make: Callable[[], Awaitable[T]]) -> T:
    """Run ``make()`` to completion on the engine's background loop, in the
    caller's DBOS context (or on a loop of its own before launch)."""
    ctx = get_context()

    async def in_context() -> T:
        set_context(ctx)  # the task's own copy of the context variables
        return await make()

    if engine is None:
        return asyncio.run(in_context())
    return engine.background.submit(in_context()).result()


async def _in_thread(func: Callable[..., T], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> T:
    engine = peek_engine()
    call = functools.partial(func, *args, **kwargs)
    return await (engine.in_pool(call) if engine is not None else asyncio.to_thread(call))
