"""A workflow's arguments checked before its body runs on them (``validate_args=``).

Validation runs where arguments come from a row someone else wrote: a
queue's dispatch (an enqueue, a client, a fork or resume) and recovery. A
direct call's arguments come from the caller's own code, so it runs on them
as given, as in DBOS Transact. What the validator returns is what the body
receives; the row keeps the arguments as they were written.

``pydantic_args_validator`` is a marker: ``@DBOS.workflow`` replaces it with
``make_pydantic_args_validator(func)``, which checks (and converts) each
argument against the function's type hints with pydantic, imported only
then: pydantic is an optional extra (``pip install dbos[validation]``).
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..error import DBOSArgumentValidationError, DBOSException
from .registry import FunctionInfo, get_registry

Arguments = Tuple[Tuple[Any, ...], Dict[str, Any]]
ValidateArgsCallable = Callable[[Tuple[Any, ...], Dict[str, Any]], Arguments]


def pydantic_args_validator(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Arguments:
    """Pass as ``@DBOS.workflow(validate_args=pydantic_args_validator)``: the
    decorator puts a validator built from the function's type hints in its place."""
    raise DBOSException("pydantic_args_validator is a marker for @DBOS.workflow(validate_args=...), "
                        "not a validator: call make_pydantic_args_validator(func) for one")


def resolve_validator(info: FunctionInfo,
                      validate_args: Optional[ValidateArgsCallable]) -> Optional[ValidateArgsCallable]:
    """The validator a decorated workflow keeps (the pydantic marker built now)."""
    if validate_args is pydantic_args_validator:
        return _pydantic_validator(info.func, lambda: info.method_kind)
    if validate_args is not None and not callable(validate_args):
        raise DBOSException(f"validate_args of workflow {info.name} must be a callable "
                            f"(args, kwargs) -> (args, kwargs), got {validate_args!r}")
    return validate_args


def make_pydantic_args_validator(func: Callable[..., Any]) -> ValidateArgsCallable:
    """A validator checking each argument of ``func`` against its type hint with
    pydantic (>= 2), converting where pydantic does ("7" to 7 for an ``int``).
    A failure raises ``DBOSArgumentValidationError`` naming every bad argument."""
    return _pydantic_validator(func, lambda: _method_kind(func))


def _pydantic_validator(func: Callable[..., Any], kind: Callable[[], Optional[str]]) -> ValidateArgsCallable:
    _pydantic()  # fail at decoration, not at the first dispatch
    checker: List[_Checker] = []

    def validate(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Arguments:
        # Built at first use: @DBOS.dbos_class, which says (``kind``) whether
        # the first parameter is self or cls, runs after the method's decorator.
        if not checker:
            checker.append(_Checker(func, kind()))
        return checker[0].check(args, kwargs)

    return validate


def _pydantic() -> Any:
    try:
        import pydantic
    except ImportError:
        raise DBOSException("pydantic_args_validator needs pydantic 2: pip install 'dbos[validation]' "
                            "(or pip install pydantic)") from None
    return pydantic


class _Checker:
    """``func``'s signature (without self or cls) and a pydantic adapter per hinted parameter."""

    def __init__(self, func: Callable[..., Any], method_kind: Optional[str]) -> None:
        pydantic = _pydantic()
        self.name = func.__qualname__
        self.error_type = pydantic.ValidationError
        params = list(inspect.signature(func).parameters.values())
        if method_kind in ("instance", "class"):
            params = params[1:]
        self.signature = inspect.Signature(params)
        hints = _type_hints(func)
        self.adapters = {p.name: pydantic.TypeAdapter(hints[p.name]) for p in params if p.name in hints}

    def check(self, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Arguments:
        problems: List[str] = []
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:  # a missing or unexpected argument
            raise DBOSArgumentValidationError(self.name, [str(exc)]) from None
        for name, value in bound.arguments.items():
            bound.arguments[name] = self._convert(name, value, problems)
        if problems:
            raise DBOSArgumentValidationError(self.name, problems)
        return tuple(bound.args), dict(bound.kwargs)

    def _convert(self, name: str, value: Any, problems: List[str]) -> Any:
        adapter = self.adapters.get(name)
        if adapter is None:
            return value
        kind = self.signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:  # the hint is each element's
            return tuple(self._one(adapter, f"{name}[{i}]", v, problems) for i, v in enumerate(value))
        if kind is inspect.Parameter.VAR_KEYWORD:
            return {k: self._one(adapter, k, v, problems) for k, v in value.items()}
        return self._one(adapter, name, value, problems)

    def _one(self, adapter: Any, name: str, value: Any, problems: List[str]) -> Any:
        try:
            return adapter.validate_python(value)
        except self.error_type as exc:
            problems.extend(f"argument {name!r}: {_describe(e)}" for e in exc.errors())
            return value


def _describe(error: Dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{error['msg']}{' at ' + where if where else ''} (got {error.get('input')!r})"


def _type_hints(func: Callable[..., Any]) -> Dict[str, Any]:
    try:
        return typing.get_type_hints(func)
    except Exception:  # a hint that names what cannot be resolved here: take them as written
        return dict(getattr(func, "__annotations__", {}))


def _method_kind(func: Callable[..., Any]) -> Optional[str]:
    """How ``func`` (decorated or not) is registered: a method's kind, or None."""
    for info in get_registry().functions.values():
        if info.func is func or info.wrapper is func:
            return info.method_kind
    return None


def validated(info: FunctionInfo, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Arguments:
    """The arguments a dispatched workflow runs on: as read, or as its validator returns them."""
    if info.validate_args is None:
        return args, kwargs
    result = info.validate_args(args, kwargs)
    if not (isinstance(result, tuple) and len(result) == 2
            and isinstance(result[0], (tuple, list)) and isinstance(result[1], dict)):
        raise DBOSException(f"validate_args of workflow {info.name} must return (args, kwargs), "
                            f"a tuple and a dict; it returned {result!r}")
    return tuple(result[0]), result[1]
