"""Roles: ``@DBOS.required_roles``, ``@DBOS.default_required_roles``, and
their enforcement when a workflow, step or transaction is called."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Callable, Iterator, List, Optional, TypeVar

from ..error import DBOSNotAuthorizedError
from .context import DBOSContext, get_context, reset_context, set_context
from .registry import FunctionInfo, get_registry

F = TypeVar("F", bound=Callable[..., Any])


def required_roles_of(info: FunctionInfo) -> Optional[List[str]]:
    """The roles a caller of ``info`` must hold one of: its own, else its class's."""
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


@contextmanager
def assumed_role(info: FunctionInfo) -> Iterator[None]:
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


def required_roles(roles: List[str]) -> Callable[[F], F]:
    """``@DBOS.required_roles``: the function's callers must hold one of ``roles``."""

    def decorate(func: F) -> F:
        setattr(func, "dbos_required_roles", list(roles))
        info: Optional[FunctionInfo] = getattr(func, "__dbos_info__", None)
        if info is not None:
            info.required_roles = list(roles)
        return func

    return decorate


def default_required_roles(roles: List[str]) -> Callable[[type], type]:
    """``@DBOS.default_required_roles``: ``required_roles`` for each method of the class naming none."""

    def decorate(cls: type) -> type:
        setattr(cls, "dbos_default_required_roles", list(roles))
        return cls

    return decorate
