"""Portable JSON: the stored format other languages and people can read.

A workflow, message or event written in this format holds plain JSON text,
recorded as ``portable_json`` in the row's ``serialization`` column, so a
workflow enqueued from TypeScript, Go or a SQL transaction runs in Python
and ``psql`` shows what is stored. JSON carries fewer types than Python:
dates and times become RFC 3339 strings, decimals strings, tuples and sets
lists; anything else is refused rather than stored as something else.
Workflow inputs are ``{"positionalArgs": [...], "namedArgs": {...}}``, a
recorded error ``{"name", "message", "code", "data"}``.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, Union, get_type_hints

from .error import DBOSInvalidArgumentError

PORTABLE_JSON = "portable_json"
PY_PICKLE = "py_pickle"

JsonValue = Any  # None, bool, int, float, str, or lists and string-keyed objects of them


class WorkflowSerializationFormat(str, Enum):
    """How a workflow, message or event is stored.

    ``PORTABLE``: portable JSON; ``NATIVE``: pickle, whatever the configured
    serializer; ``DEFAULT``: the workflow's own format, else the configured one.
    """

    PORTABLE = "portable"
    NATIVE = "native"
    DEFAULT = None  # stored as the text "None", as DBOS Transact does


@dataclass(eq=False)
class PortableWorkflowError(Exception):
    """An error stored in portable JSON, or a value portable JSON cannot carry.

    ``name`` is the error's type as its writer named it (``ValueError``,
    a TypeScript ``Error``), ``code`` and ``data`` what it added.
    """

    message: str
    name: str
    code: Union[int, str, None] = None
    data: JsonValue = None

    def __str__(self) -> str:
        return self.message

    def to_error_data(self) -> Dict[str, Any]:
        """The JSON object this error is stored as (``code`` and ``data`` only when set)."""
        out: Dict[str, Any] = {"name": self.name, "message": self.message}
        if self.code is not None:
            out["code"] = self.code
        if self.data is not None:
            out["data"] = self.data
        return out


def to_json_text(value: Any) -> str:
    """Compact JSON of ``value``; ``TypeError`` naming a type JSON cannot carry."""
    return json.dumps(to_portable(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def to_portable(value: Any) -> JsonValue:
    """``value`` as plain JSON data (lists, string-keyed dicts, scalars)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, datetime):
        return _rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_portable(v) for v in value]
    if isinstance(value, Mapping):
        return {_key(k): to_portable(v) for k, v in value.items()}
    raise TypeError(f"Object of type {type(value).__name__} is not portable JSON serializable")


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"a dict key of type {type(key).__name__} is not portable JSON serializable "
                        "(JSON object keys are strings)")
    return key


def _rfc3339(moment: datetime) -> str:
    """UTC with milliseconds and ``Z``: naive times are taken as UTC."""
    moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def inputs_text(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> str:
    return to_json_text({"positionalArgs": list(args), "namedArgs": kwargs})


def inputs_from_text(text: str) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
    """The arguments of a portable row; missing or null parts are empty."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise TypeError(f"portable workflow inputs must be a JSON object, found {type(data).__name__}")
    positional, named = data.get("positionalArgs") or [], data.get("namedArgs") or {}
    if not isinstance(positional, list) or not isinstance(named, dict):
        raise TypeError("portable workflow inputs need positionalArgs as an array and namedArgs as an object")
    return tuple(positional), named


def error_data(error: BaseException, message: str) -> Dict[str, Any]:
    """What is stored of an exception: its type name, ``message`` (its text, got
    without raising), and a code and data if it has them."""
    if isinstance(error, PortableWorkflowError):
        return error.to_error_data()
    out: Dict[str, Any] = {"name": type(error).__name__, "message": message}
    out["code"] = _code(error)
    for attr in ("data", "details", "payload", "extra", "meta", "metadata"):
        found = getattr(error, attr, None)
        if found is not None and not callable(found):
            out["data"] = _portable_or_text(found)
            break
    return out


def _code(error: BaseException) -> Union[int, str, None]:
    for attr in ("code", "error_code", "dbos_error_code", "errno", "status", "status_code"):
        found = getattr(error, attr, None)
        if isinstance(found, (int, str)) and not isinstance(found, bool):
            return found
    return None


def _portable_or_text(value: Any) -> JsonValue:
    # Storing the error must not fail on its extras: what JSON cannot carry is kept as text.
    try:
        return to_portable(value)
    except TypeError:
        return repr(value)


def error_from_text(text: str) -> PortableWorkflowError:
    data = json.loads(text)
    if not isinstance(data, dict):
        return PortableWorkflowError(str(data), "Error")
    return PortableWorkflowError(str(data.get("message", "")), str(data.get("name") or "Error"),
                                 data.get("code"), data.get("data"))


def format_of(serialization_type: Any) -> Optional[str]:
    """The stored format a ``serialization_type`` asks for; None: the default."""
    if serialization_type is None:
        return None
    try:
        chosen = WorkflowSerializationFormat(serialization_type)
    except ValueError:
        choices = ", ".join(f"WorkflowSerializationFormat.{f.name}" for f in WorkflowSerializationFormat)
        raise DBOSInvalidArgumentError("serialization_type", serialization_type, f"use one of {choices}") from None
    return {WorkflowSerializationFormat.PORTABLE: PORTABLE_JSON,
            WorkflowSerializationFormat.NATIVE: PY_PICKLE}.get(chosen)


def coerce_to_hints(func: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any],
                    *, bound: bool) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
    """Arguments read from portable JSON with ``date``/``datetime`` strings turned
    back into dates where ``func``'s hints ask for them (``bound``: the first
    parameter, self or cls, is not among ``args``). Other values are left as they are."""
    hints = _hints(func)
    if not hints:
        return args, kwargs
    try:
        params = list(inspect.signature(func).parameters)[1 if bound else 0:]
    except (TypeError, ValueError):
        return args, kwargs
    positional = tuple(_coerce(v, hints.get(p)) for v, p in zip(args, params)) + args[len(params):]
    return positional, {k: _coerce(v, hints.get(k)) for k, v in kwargs.items()}


def _hints(func: Callable[..., Any]) -> Dict[str, Any]:
    try:
        return get_type_hints(func)
    except Exception:  # a hint naming what this module cannot resolve
        return dict(getattr(func, "__annotations__", {}) or {})


def _coerce(value: Any, hint: Any) -> Any:
    if not isinstance(value, str) or hint not in (datetime, date):
        return value
    try:
        moment = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        return value
    return moment if hint is datetime else moment.date()
