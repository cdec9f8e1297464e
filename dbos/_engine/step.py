"""Steps: run once, checkpoint the outcome, replay it afterwards.

Outside a workflow (or inside another step) a step is a plain call. Inside
one it is an operation (``operation.py``): a recorded outcome is returned (or
raised) without running the function again; otherwise the function runs,
with retries if asked, and its outcome is checkpointed.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple, TypeVar, Union

from .._status import StepStatus
from ..error import DBOSException, DBOSMaxStepRetriesExceeded
from .context import DBOSContext, current_run, get_context, reset_context, set_context
from .engine import Engine, get_engine, peek_engine
from .operation import Operation
from .registry import FunctionInfo, register_function, register_temp_workflow, wrapper_for
from .roles import assumed_role

logger = logging.getLogger("dbos")

MAX_BACKOFF_SEC = 3600.0
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class RetryPolicy:
    retries_allowed: bool = False
    interval_seconds: float = 1.0
    max_attempts: int = 3
    backoff_rate: float = 2.0
    should_retry: Optional[Callable[[BaseException], Union[bool, Awaitable[bool]]]] = None

    @property
    def attempts(self) -> int:
        return max(1, self.max_attempts) if self.retries_allowed else 1

    def delay(self, attempt: int) -> float:
        return float(min(self.interval_seconds * self.backoff_rate ** attempt, MAX_BACKOFF_SEC))


# ----------------------------------------------------------------------
# The decorator
# ----------------------------------------------------------------------


def make_step(func: F, name: Optional[str], policy: RetryPolicy) -> F:
    """What ``@DBOS.step()`` makes of ``func``: in a workflow, a checkpointed call."""
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


def step_context(op: Operation, policy: RetryPolicy) -> DBOSContext:
    """The context a step runs in: the workflow's caller, the step's own ID and status."""
    max_attempts = policy.attempts if policy.retries_allowed else None
    status = StepStatus(op.function_id, None, max_attempts)
    caller = get_context() or DBOSContext()
    return caller.workflow_child(op.workflow, step_id=op.function_id, step_status=status)


def _exhausted(name: str, policy: RetryPolicy, errors: List[Exception]) -> Exception:
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


def _log_retry(name: str, attempt: int, policy: RetryPolicy, exc: Exception) -> None:
    logger.warning(
        f"Step {name} failed ({type(exc).__name__}: {exc}); retrying "
        f"(attempt {attempt + 2} of {policy.attempts})"
    )


# ----------------------------------------------------------------------
# Sync
# ----------------------------------------------------------------------


def run_with_retries(info: FunctionInfo, policy: RetryPolicy, ctx: DBOSContext,
                     args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
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
                _log_retry(info.name, attempt, policy, exc)
                time.sleep(policy.delay(attempt))
    raise _exhausted(info.name, policy, errors)


def _sync_predicate(policy: RetryPolicy, exc: Exception) -> bool:
    assert policy.should_retry is not None
    verdict = policy.should_retry(exc)
    if inspect.isawaitable(verdict):
        if inspect.iscoroutine(verdict):
            verdict.close()  # never awaited: close it rather than leak a warning
        raise DBOSException("An async should_retry predicate needs an async step")
    return bool(verdict)


def call_step_sync(engine: Engine, info: FunctionInfo, policy: RetryPolicy,
                   args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    op = Operation.begin(engine, info.name)
    if op is None:
        return info.func(*args, **kwargs)
    if op.replaying:
        return op.replay()
    op.check_cancelled()
    ctx = step_context(op, policy)
    token = set_context(ctx)
    try:
        value = run_with_retries(info, policy, ctx, args, kwargs)
    except Exception as exc:
        _keep_storable(engine, exc)
        op.fail(exc)
        raise
    finally:
        reset_context(token)
    return op.succeed(value, what=f"the output of step {info.name!r}")


# ----------------------------------------------------------------------
# Async
# ----------------------------------------------------------------------


async def run_with_retries_async(info: FunctionInfo, policy: RetryPolicy, ctx: DBOSContext,
                                 args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    errors: List[Exception] = []
    for attempt in range(policy.attempts):
        if ctx.step_status is not None and policy.retries_allowed:
            ctx.step_status.current_attempt = attempt + 1
        try:
            return await info.func(*args, **kwargs)
        except Exception as exc:
            errors.append(exc)
            if policy.should_retry is not None and not await _async_predicate(policy, exc):
                raise
            if attempt + 1 < policy.attempts:
                _log_retry(info.name, attempt, policy, exc)
                await asyncio.sleep(policy.delay(attempt))
    raise _exhausted(info.name, policy, errors)


async def _async_predicate(policy: RetryPolicy, exc: Exception) -> bool:
    assert policy.should_retry is not None
    verdict = policy.should_retry(exc)
    if inspect.isawaitable(verdict):
        verdict = await verdict
    return bool(verdict)


async def call_step_async(engine: Engine, info: FunctionInfo, policy: RetryPolicy,
                          args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    op = Operation.begin(engine, info.name)
    if op is None:
        return await info.func(*args, **kwargs)
    if op.replaying:
        return op.replay()
    op.check_cancelled()
    ctx = step_context(op, policy)
    token = set_context(ctx)
    try:
        value = await run_with_retries_async(info, policy, ctx, args, kwargs)
    except Exception as exc:
        _keep_storable(engine, exc)
        await asyncio.to_thread(op.fail, exc)
        raise
    finally:
        reset_context(token)
    what = f"the output of step {info.name!r}"
    return await asyncio.to_thread(functools.partial(op.succeed, value, what=what))
