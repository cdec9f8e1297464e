"""The registry of decorated functions, classes and configured instances.

Decorators fill it at import time, before ``DBOS`` exists; recovery looks
workflows up in it by their recorded name.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple

from ..error import DBOSConflictingRegistrationError, DBOSException, DBOSWorkflowFunctionNotFoundError

logger = logging.getLogger("dbos")

Kind = Literal["workflow", "step", "transaction"]
MethodKind = Literal["static", "class", "instance"]
TEMP_PREFIX = "<temp>."


@dataclass
class FunctionInfo:
    """A decorated function and how DBOS runs it."""

    name: str
    kind: Kind
    func: Callable[..., Any]
    is_async: bool
    max_recovery_attempts: Optional[int] = 100
    options: Dict[str, Any] = field(default_factory=dict)
    method_kind: Optional[MethodKind] = None
    class_name: Optional[str] = None
    required_roles: Optional[List[str]] = None
    wrapper: Optional[Callable[..., Any]] = None
    # A workflow's validate_args: (args, kwargs) -> (args, kwargs), run on dispatch (validation.py).
    validate_args: Optional[Callable[..., Any]] = None
    serialization: Optional[str] = None  # a workflow's stored format; None: inherited or configured


class Registry:
    def __init__(self) -> None:
        self.functions: Dict[str, FunctionInfo] = {}
        self.classes: Dict[str, type] = {}
        self.instances: Dict[str, object] = {}
        self.queues: Dict[str, Any] = {}
        self.schedules: List[Tuple[FunctionInfo, str]] = []

    @property
    def workflows(self) -> Dict[str, FunctionInfo]:
        return {n: i for n, i in self.functions.items() if i.kind == "workflow"}

    def register(self, info: FunctionInfo) -> None:
        existing = self.functions.get(info.name)
        if existing is not None and existing.kind != info.kind:
            raise DBOSConflictingRegistrationError(info.name)
        if existing is not None and existing.func is not info.func:
            logger.warning(f"Duplicate registration of function {info.name}; the later one wins")
        self.functions[info.name] = info

    def workflow_functions(self) -> List[Callable[..., Any]]:
        return [i.func for i in self.functions.values() if i.kind == "workflow"]

    def register_queue(self, name: str, queue: Any) -> None:
        if name in self.queues:
            raise DBOSException(f"Queue {name} has already been declared")
        self.queues[name] = queue

    def register_class(self, name: str, cls: type) -> None:
        known = self.classes.get(name)
        if known is not None and known is not cls:
            raise DBOSException(f"Another class is already registered under the name {name!r}")
        self.classes[name] = cls

    def register_instance(self, key: str, instance: object) -> None:
        known = self.instances.get(key)
        if known is not None and known is not instance:
            raise DBOSException(
                f"Another instance is already registered as {key!r}: give each "
                "DBOSConfiguredInstance of a class its own config_name"
            )
        self.instances[key] = instance


_registry = Registry()


def get_registry() -> Registry:
    return _registry


def clear_registry() -> None:
    """Forget every decorated function (``DBOS.destroy(destroy_registry=True)``)."""
    global _registry
    _registry = Registry()


def resolve(func: Callable[..., Any]) -> Tuple[FunctionInfo, Tuple[Any, ...]]:
    """The workflow to start for ``func``, and the object a bound method carries.

    A step or transaction starts as the one-step workflow around it.
    """
    base, bound = split_bound(func)
    info = getattr(base, "__dbos_info__", None)
    if not isinstance(info, FunctionInfo):
        name = getattr(func, "__qualname__", repr(func))
        raise DBOSWorkflowFunctionNotFoundError(
            "<none>", f"{name} is not decorated with @DBOS.workflow(), @DBOS.step() or @DBOS.transaction()"
        )
    if info.kind != "workflow":
        info = info.options["temp"]
    return info, bound


def split_bound(func: Any) -> Tuple[Any, Tuple[Any, ...]]:
    """A bound method's function and the object it is bound to."""
    target = getattr(func, "__self__", None)
    if target is None:
        return func, ()
    return func.__func__, (target,)


def register_function(func: Callable[..., Any], name: Optional[str], kind: Kind, **extra: Any) -> FunctionInfo:
    """Register a decorated function under ``name`` (default: its qualified name)."""
    info = FunctionInfo(
        name=name or func.__qualname__,
        kind=kind,
        func=func,
        is_async=inspect.iscoroutinefunction(func),
        required_roles=getattr(func, "dbos_required_roles", None),
        **extra,
    )
    get_registry().register(info)
    return info


def register_temp_workflow(info: FunctionInfo, body: Callable[..., Any]) -> FunctionInfo:
    """A one-step "<temp>." workflow around a step or transaction, so it can be
    started like a workflow (and a transaction called outside one is durable)."""
    temp = FunctionInfo(name=TEMP_PREFIX + info.name, kind="workflow", func=body, is_async=info.is_async)
    get_registry().register(temp)
    info.options["temp"] = temp
    return temp


def wrapper_for(info: FunctionInfo, call: Callable[..., Any]) -> Callable[..., Any]:
    """Attach the registry record to a decorated function."""
    setattr(call, "dbos_function_name", info.name)
    setattr(call, "__dbos_info__", info)
    info.wrapper = call
    return call
