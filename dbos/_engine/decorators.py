"""What ``@DBOS.workflow``, ``@DBOS.step``, ``@DBOS.transaction`` and friends build.

Each decorator registers a ``FunctionInfo`` and returns a wrapper of the same
kind (a coroutine function for ``async def``). Steps and transactions also
register a one-step "<temp>." workflow, so they can be started like
workflows and so a transaction called outside a workflow is still durable.
"""

from __future__ import annotations

import functools
import inspect
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable, Iterator, List, Optional, TypeVar

from ..error import DBOSException
from .context import DBOSContext, get_context, reset_context, set_context
from .engine import get_engine, peek_engine
from .launch import check_roles
from .registry import TEMP_PREFIX, FunctionInfo, get_registry
from .step import RetryPolicy, call_step_async, call_step_sync
from .transaction import call_transaction
from .workflow import call_async, call_sync

F = TypeVar("F", bound=Callable[..., Any])


def _info(func: Callable[..., Any], name: Optional[str], kind: str, **extra: Any) -> FunctionInfo:
    info = FunctionInfo(
        name=name or func.__qualname__,
        kind=kind,  # type: ignore[arg-type]
        func=func,
        is_async=inspect.iscoroutinefunction(func),
        required_roles=getattr(func, "dbos_required_roles", None),
        **extra,
    )
    get_registry().register(info)
    return info


def wrapper_for(info: FunctionInfo, call: Callable[..., Any]) -> Callable[..., Any]:
    """Attach the registry record to a decorated function."""
    setattr(call, "dbos_function_name", info.name)
    setattr(call, "__dbos_info__", info)
    info.wrapper = call
    return call


def make_workflow(func: F, name: Optional[str], max_recovery_attempts: Optional[int]) -> F:
    info = _info(func, name, "workflow", max_recovery_attempts=max_recovery_attempts)
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


def _in_workflow() -> bool:
    ctx = get_context()
    return ctx is not None and ctx.run is not None and ctx.step_id is None


def make_step(func: F, name: Optional[str], policy: RetryPolicy) -> F:
    info = _info(func, name, "step", options={"policy": policy})
    if info.is_async:

        @functools.wraps(func)
        async def step_async(*args: Any, **kwargs: Any) -> Any:
            with _assumed_role(info):
                if not _in_workflow():
                    return await func(*args, **kwargs)
                engine = get_engine(f"Step {info.name}")
                return await call_step_async(engine, info, policy, args, kwargs)

        wrapper: Callable[..., Any] = step_async
    else:

        def call(args: Any, kwargs: Any) -> Any:
            if not _in_workflow():
                return func(*args, **kwargs)
            engine = peek_engine() or get_engine(f"Step {info.name}")
            return call_step_sync(engine, info, policy, args, kwargs)

        @functools.wraps(func)
        def step(*args: Any, **kwargs: Any) -> Any:
            # Checked per call: @DBOS.required_roles may be applied after this
            # decorator. Most steps have none and skip the context manager.
            if not info.required_roles:
                return call(args, kwargs)
            with _assumed_role(info):
                return call(args, kwargs)

        wrapper = step
    _temp_workflow(info, wrapper)
    return wrapper_for(info, wrapper)  # type: ignore[return-value]


def make_transaction(func: F, isolation_level: str, name: Optional[str]) -> F:
    if inspect.iscoroutinefunction(func):
        raise DBOSException(
            f"Transaction {func.__qualname__} is async; @DBOS.transaction() needs a "
            "regular function (use an async step for async database work)"
        )
    info = _info(func, name, "transaction", options={"isolation_level": isolation_level})

    def body(*args: Any, **kwargs: Any) -> Any:
        return call_transaction(get_engine(f"Transaction {info.name}"), info, args, kwargs)

    temp = _temp_workflow(info, body)

    @functools.wraps(func)
    def transaction(*args: Any, **kwargs: Any) -> Any:
        engine = get_engine(f"Transaction {info.name}")
        with _assumed_role(info):
            ctx = get_context()
            if ctx is None or ctx.run is None:
                return call_sync(engine, temp, args, kwargs)
            return call_transaction(engine, info, args, kwargs)

    return wrapper_for(info, transaction)  # type: ignore[return-value]


@contextmanager
def _assumed_role(info: FunctionInfo) -> Iterator[None]:
    """Enforce a step's or transaction's own ``@DBOS.required_roles`` for the call.

    The role it assumes holds for the call only, not in the caller's context.
    """
    if not info.required_roles:
        yield
        return
    current = get_context()
    ctx = replace(current) if current is not None else DBOSContext()
    check_roles(info, ctx)
    token = set_context(ctx)
    try:
        yield
    finally:
        reset_context(token)


def _temp_workflow(info: FunctionInfo, body: Callable[..., Any]) -> FunctionInfo:
    """A one-step workflow around a step or transaction."""
    temp = FunctionInfo(
        name=TEMP_PREFIX + info.name, kind="workflow", func=body, is_async=info.is_async
    )
    get_registry().register(temp)
    info.options["temp"] = temp
    return temp


# ----------------------------------------------------------------------
# Classes and roles
# ----------------------------------------------------------------------


def register_class(cls: type, class_name: Optional[str]) -> type:
    """Record which decorated functions of ``cls`` are static, class or instance methods."""
    name = class_name or cls.__qualname__
    get_registry().register_class(name, cls)
    setattr(cls, "dbos_class_name", name)
    for attr in vars(cls).values():
        kind, func = _method_kind(attr)
        info: Optional[FunctionInfo] = getattr(func, "__dbos_info__", None)
        if info is not None:
            _tag(info, kind, name)
    return cls


def _method_kind(attr: Any) -> tuple[str, Any]:
    if isinstance(attr, staticmethod):
        return "static", attr.__func__
    if isinstance(attr, classmethod):
        return "class", attr.__func__
    return "instance", attr


def _tag(info: FunctionInfo, kind: str, class_name: str) -> None:
    for target in (info, info.options.get("temp")):
        if isinstance(target, FunctionInfo):
            target.method_kind = kind  # type: ignore[assignment]
            target.class_name = class_name


def required_roles(roles: List[str]) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        setattr(func, "dbos_required_roles", list(roles))
        info: Optional[FunctionInfo] = getattr(func, "__dbos_info__", None)
        if info is not None:
            info.required_roles = list(roles)
        return func

    return decorate


def default_required_roles(roles: List[str]) -> Callable[[type], type]:
    def decorate(cls: type) -> type:
        setattr(cls, "dbos_default_required_roles", list(roles))
        return cls

    return decorate


class DBOSConfiguredInstance:
    """Base of classes whose instance methods are workflows, steps or transactions.

    Each instance registers under ``<class name>/<config_name>`` so that
    recovery can find the object a workflow ran on.
    """

    def __init__(self, config_name: str) -> None:
        self.config_name = config_name
        class_name = getattr(type(self), "dbos_class_name", type(self).__qualname__)
        get_registry().register_instance(f"{class_name}/{config_name}", self)
