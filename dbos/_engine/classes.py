"""``@DBOS.dbos_class`` and ``DBOSConfiguredInstance``: workflows, steps and
transactions that are methods, and the instances recovery runs them on."""

from __future__ import annotations

from typing import Any, Optional

from ..error import DBOSException
from .registry import FunctionInfo, get_registry


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


class DBOSConfiguredInstance:
    """Base of classes whose instance methods are workflows, steps or transactions.

    Each instance registers under ``<class name>/<config_name>`` so that
    recovery can find the object a workflow ran on.
    """

    def __init__(self, config_name: str) -> None:
        self.config_name = config_name
        register_instance(self)


def register_instance(instance: object) -> None:
    """Register ``instance`` under ``<class name>/<config_name>``; ``DBOSException``
    without a ``config_name``, or for another instance under the same key."""
    config_name = getattr(instance, "config_name", None)
    if not isinstance(config_name, str):
        raise DBOSException(
            f"Cannot register {type(instance).__qualname__} instance: it needs a config_name "
            "(a str attribute, as DBOSConfiguredInstance sets)")
    class_name = getattr(type(instance), "dbos_class_name", type(instance).__qualname__)
    get_registry().register_instance(f"{class_name}/{config_name}", instance)
