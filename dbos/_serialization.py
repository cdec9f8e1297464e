"""Turning workflow inputs, outputs and recorded exceptions into TEXT and back.

Every value the system database keeps (workflow inputs, step and workflow
outputs, recorded errors) goes through a ``Serializer``: an object that turns a
Python value into a ``str`` and back. The default one stores
``base64(pickle.dumps(value))`` and is called ``"py_pickle"``; applications may
configure their own by subclassing ``Serializer``.

The engine never calls a serializer directly. It goes through ``Codec``, which
adds what the raw serializer cannot know:

* workflow inputs are stored as one value, ``{"args": tuple, "kwargs": dict}``,
  and when they cannot be serialized the error names the culprit argument
  (positions are 1-based: "argument 2" is ``args[1]``);
* a failure to serialize an output becomes a ``DBOSSerializationError`` naming it;
* recorded exceptions are checked to come back at write time, and are replaced
  by a ``DBOSRecordedError`` stand-in when they would not; reading one never
  raises, so a workflow's outcome can always be reported.

Values are *not* round-tripped when written: that would double the cost of
every step checkpoint, and a value that fails to load is reported clearly when
it is read. Only errors get the check, because there the original exception is
at hand to build a faithful stand-in, and it is not there anymore at read time.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import pickle
import pickletools
from abc import ABC, abstractmethod
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ._portable_json import (
    PORTABLE_JSON,
    PY_PICKLE,
    PortableWorkflowError,
    error_data,
    error_from_text,
    format_of,
    inputs_from_text,
    inputs_text,
    to_json_text,
)
from .error import DBOSRecordedError, DBOSSerializationError, DBOSUnknownSerializationError

__all__ = ["Codec", "DBOSPortableJSONSerializer", "DefaultSerializer", "Serializer"]

# Pinned rather than pickle.HIGHEST_PROTOCOL, so that rows written by a newer
# Python stay readable by every Python this library supports (3.8+ reads 5).
_PICKLE_PROTOCOL = 5


class Serializer(ABC):
    """Turns any value the application records into a ``str`` and back."""

    @abstractmethod
    def serialize(self, data: Any) -> str:
        """Return the text stored for ``data``; raise if it cannot be stored."""

    @abstractmethod
    def deserialize(self, serialized_data: str) -> Any:
        """Return the value ``serialize`` was given for ``serialized_data``."""

    def name(self) -> str:
        """The format name recorded next to each serialized column."""
        return "custom_serializer"


class DefaultSerializer(Serializer):
    """``base64(pickle)``: stores any picklable Python value."""

    def serialize(self, data: Any) -> str:
        # ASCII base64 keeps binary pickle safe in a TEXT column on every backend.
        # binascii directly: base64.b64encode is a Python wrapper around it,
        # and every checkpoint pays for the call.
        return binascii.b2a_base64(pickle.dumps(data, protocol=_PICKLE_PROTOCOL), newline=False).decode("ascii")

    def deserialize(self, serialized_data: str) -> Any:
        raw = base64.b64decode(serialized_data)
        try:
            return pickle.loads(raw)
        except ModuleNotFoundError:
            # Recorded before the modules moved; rare, so the plain load, twice as fast, goes first.
            return _Unpickler(io.BytesIO(raw)).load()

    def name(self) -> str:
        return "py_pickle"


class DBOSPortableJSONSerializer(Serializer):
    """Portable JSON (``"portable_json"``): compact JSON text any language reads.

    Dates and times are stored as RFC 3339 strings, decimals as strings,
    tuples and sets as lists; other types raise ``TypeError``.
    """

    # Parameter names as DBOS Transact's, for callers that pass them by keyword.
    def serialize(self, value: Any) -> str:
        return to_json_text(value)

    def deserialize(self, text: str) -> Any:
        return None if text is None else json.loads(text)

    def name(self) -> str:
        return PORTABLE_JSON


# Where the library's classes lived before its internal modules became
# private packages: values recorded then (a WorkflowStatus a workflow read,
# say) name these modules, and still load.
_MOVED_MODULES = {
    "dbos.status": "dbos._status",
    "dbos.handle": "dbos._engine.handles",
    "dbos.communication": "dbos._engine.messages",
    "dbos.context": "dbos._engine.context",
    "dbos.deadline": "dbos._engine.deadline",
    "dbos.decorators": "dbos._engine.classes",
    "dbos.queue": "dbos._queues.queue",
    "dbos.client": "dbos._ops.client",
    "dbos.operations": "dbos._ops.management",
    "dbos.version": "dbos._versions",
    "dbos.serialization": "dbos._serialization",
    "dbos.config": "dbos._config",
    "dbos.datasource": "dbos._datasource",
    "dbos.runtime": "dbos._facade.dbos",
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(_MOVED_MODULES.get(module, module), name)


class Codec:
    """Wraps the configured ``Serializer``; the engine only calls these methods.

    A row may record another format in its ``serialization`` column (NULL:
    the configured one): ``for_stored`` gives the codec that reads it, and
    ``for_type`` the one a ``serialization_type`` writes with; ``column`` is
    what a codec's writes record.
    """

    column: Optional[str] = None

    def __init__(self, serializer: Optional[Serializer] = None) -> None:
        self.serializer: Serializer = serializer if serializer is not None else DefaultSerializer()
        self._formats: Dict[str, Codec] = {}

    @staticmethod
    def of(serializer: Optional[Serializer]) -> "Codec":
        """The codec of a configured serializer: portable JSON configured as the
        application's serializer stores workflows in the portable shapes."""
        if serializer is not None and serializer.name() == PORTABLE_JSON:
            return PortableCodec(None)
        return Codec(serializer)

    @property
    def home(self) -> "Codec":
        """The codec of the configured serializer, which the others derive from."""
        return self

    def for_stored(self, serialization: Optional[str]) -> "Codec":
        """The codec that reads values whose row records ``serialization``."""
        home = self.home
        if serialization is None or serialization == home.serializer.name():
            return home
        if serialization not in (PORTABLE_JSON, PY_PICKLE):
            raise DBOSUnknownSerializationError(serialization, home.serializer.name())
        if serialization not in home._formats:
            home._formats[serialization] = PortableCodec(home) if serialization == PORTABLE_JSON else _Native(home)
        return home._formats[serialization]

    def for_type(self, serialization_type: Any) -> "Codec":
        """The codec a ``WorkflowSerializationFormat`` writes with (DEFAULT: this one)."""
        chosen = format_of(serialization_type)
        return self if chosen is None else self.for_stored(chosen)

    def _refusal(self, what: str, reason: str) -> Exception:
        """The error for a value this format cannot store."""
        return DBOSSerializationError(what, reason)

    # -- workflow inputs ---------------------------------------------------

    def dump_inputs(
        self, args: Tuple[Any, ...], kwargs: Dict[str, Any], *, workflow_name: str
    ) -> str:
        try:
            return self.serializer.serialize({"args": args, "kwargs": kwargs})
        except Exception as exc:
            raise self._inputs_error(args, kwargs, workflow_name, exc) from exc

    def _inputs_error(
        self, args: Tuple[Any, ...], kwargs: Dict[str, Any], workflow_name: str, whole: Exception
    ) -> Exception:
        # The error for the whole dictionary rarely says which argument is at
        # fault, so each one is tried alone; this only runs on the failure path.
        labelled: List[Tuple[str, Any]] = [
            (f"argument {i}", arg) for i, arg in enumerate(args, start=1)
        ]
        labelled += [(f"keyword argument '{key}'", value) for key, value in kwargs.items()]
        for label, value in labelled:
            reason = self._failure(value)
            if reason is not None:
                return self._refusal(f"{label} of workflow '{workflow_name}'", reason)
        # No argument fails alone (e.g. a size limit reached only by all of them).
        return self._refusal(f"the inputs of workflow '{workflow_name}'", _describe(whole))

    def _failure(self, value: Any) -> Optional[str]:
        try:
            self.serializer.serialize(value)
        except Exception as exc:
            return _describe(exc)
        return None

    def load_inputs(self, text: str) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
        what = "the recorded workflow inputs"
        data = self._load(text, what)
        try:
            # Formats without tuples (JSON) give back a list; tuple() restores it.
            return tuple(data["args"]), dict(data["kwargs"])
        except (TypeError, KeyError, ValueError) as exc:
            found = type(data).__name__
            shape = "{'args': ..., 'kwargs': ...}"
            raise DBOSSerializationError(what, f"expected {shape}, found {found}") from exc

    # -- step and workflow outputs -----------------------------------------

    def dump_value(self, value: Any, *, what: str) -> str:
        # Hot path: one serializer call and nothing else when it succeeds.
        try:
            return self.serializer.serialize(value)
        except Exception as exc:
            raise self._refusal(what, _describe(exc)) from exc

    def load_value(self, text: Optional[str]) -> Any:
        if text is None:
            return None
        return self._load(text, "a recorded value")

    def _load(self, text: str, what: str) -> Any:
        try:
            return self.serializer.deserialize(text)
        except Exception as exc:
            raise DBOSSerializationError(what, _describe(exc), reading=True) from exc

    # -- recorded exceptions -----------------------------------------------

    def dump_error(self, exc: BaseException) -> str:
        """Serialize ``exc``, or a stand-in for it when it would not come back."""
        text = self._dump_checked(exc)
        if text is not None:
            return text
        type_name, message = _type_name(type(exc)), _safe_str(exc)
        # A serializer that cannot hold exceptions at all (JSON) still holds a
        # dictionary of two strings, which load_error turns back into the stand-in.
        for stand_in in (DBOSRecordedError(type_name, message), _stand_in_dict(type_name, message)):
            text = self._dump_checked(stand_in)
            if text is not None:
                return text
        # The serializer stores nothing at all: keep the words, load_error
        # will report them as unrestorable rather than fail.
        return f"{type_name}: {message}"

    def _dump_checked(self, obj: Any) -> Optional[str]:
        # Many exceptions pickle fine and then fail to unpickle (an __init__
        # needing other arguments than ``args``); find out now, not at read time.
        try:
            text = self.serializer.serialize(obj)
            restored = self.serializer.deserialize(text)
        except Exception:
            return None
        return text if type(restored) is type(obj) else None

    def load_error(self, text: str) -> BaseException:
        """The recorded exception, or a ``DBOSRecordedError`` describing it."""
        try:
            obj = self.serializer.deserialize(text)
        except Exception as exc:
            reason = f"could not be restored: {_describe(exc)}"
            return DBOSRecordedError(self._class_hint(text), reason)
        return _as_exception(obj)

    def _class_hint(self, text: str) -> str:
        # Only the default format is known to be a pickle stream worth reading.
        if isinstance(self.serializer, DefaultSerializer):
            return _pickled_class_name(text)
        return "unknown"


class _Native(Codec):
    """Pickle (``WorkflowSerializationFormat.NATIVE``) where another serializer is configured."""

    column = PY_PICKLE

    def __init__(self, home: Codec) -> None:
        super().__init__(DefaultSerializer())
        self._home = home

    @property
    def home(self) -> Codec:
        return self._home


class PortableCodec(Codec):
    """Portable JSON: inputs as ``positionalArgs``/``namedArgs``, errors as
    ``{"name", "message", "code", "data"}`` read back as ``PortableWorkflowError``."""

    column = PORTABLE_JSON

    def __init__(self, home: Optional[Codec]) -> None:
        """``home`` None: portable JSON is the configured format."""
        super().__init__(DBOSPortableJSONSerializer())
        self._home = home

    @property
    def home(self) -> Codec:
        return self if self._home is None else self._home

    def _refusal(self, what: str, reason: str) -> Exception:
        return PortableWorkflowError(
            f"Cannot store {what} as portable JSON: {reason}. Pass JSON values (str, int, float, bool, "
            "None, lists, dicts with string keys; dates and decimals become strings), or use "
            "WorkflowSerializationFormat.NATIVE", "TypeError")

    def dump_inputs(self, args: Tuple[Any, ...], kwargs: Dict[str, Any], *, workflow_name: str) -> str:
        try:
            return inputs_text(args, kwargs)
        except (TypeError, ValueError) as exc:
            raise self._inputs_error(args, kwargs, workflow_name, exc) from exc

    def load_inputs(self, text: str) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
        try:
            return inputs_from_text(text)
        except (TypeError, ValueError) as exc:
            raise DBOSSerializationError("the recorded portable workflow inputs", _describe(exc)) from exc

    def dump_error(self, exc: BaseException) -> str:
        data = error_data(exc, _safe_str(exc))
        try:
            return to_json_text(data)
        except ValueError:  # a NaN in its data: the name and message are what matter
            return to_json_text({**data, "data": None})

    def load_error(self, text: str) -> BaseException:
        try:
            return error_from_text(text)
        except ValueError as exc:
            return DBOSRecordedError("unknown", f"could not be restored: {_describe(exc)}")


# -- helpers ---------------------------------------------------------------

_STAND_IN_KEYS = frozenset({"type_name", "error_message"})


def _stand_in_dict(type_name: str, message: str) -> Dict[str, str]:
    return {"type_name": type_name, "error_message": message}


def _as_exception(obj: Any) -> BaseException:
    if isinstance(obj, BaseException):
        return obj
    if isinstance(obj, dict) and set(obj) == _STAND_IN_KEYS:
        return DBOSRecordedError(str(obj["type_name"]), str(obj["error_message"]))
    # Someone recorded a non-exception as an error; report it rather than fail.
    message = f"recorded error is not an exception: {_safe_repr(obj)}"
    return DBOSRecordedError(_type_name(type(obj)), message)


def _type_name(cls: type) -> str:
    """``module.QualName``, without the module for builtins (``ValueError``)."""
    qualname = getattr(cls, "__qualname__", None) or getattr(cls, "__name__", "unknown")
    module = getattr(cls, "__module__", None)
    if not module or module == "builtins":
        return str(qualname)
    return f"{module}.{qualname}"


def _safe_str(exc: BaseException) -> str:
    # A broken __str__ must not turn recording an error into a new error.
    try:
        return str(exc)
    except Exception:
        return f"<{_type_name(type(exc))}: str() failed>"


def _safe_repr(obj: Any) -> str:
    try:
        text = repr(obj)
    except Exception:
        return f"<{_type_name(type(obj))}: repr() failed>"
    return text if len(text) <= 200 else text[:197] + "..."


def _describe(exc: BaseException) -> str:
    """The reason given in errors: type and message of the underlying failure."""
    message = _safe_str(exc)
    kind = type(exc).__name__
    return f"{kind}: {message}" if message else kind


# Callables that pickled exceptions reference before their own class
# (DBOS errors rebuild through ``_rebuild``); skipped when naming the class.
_RECONSTRUCTORS = frozenset(
    {"dbos.error._rebuild", "copyreg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__"}
)


def _pickled_class_name(text: str) -> str:
    """The first class a pickle stream refers to, read without executing it."""
    try:
        for name in _pickle_globals(base64.b64decode(text)):
            if name not in _RECONSTRUCTORS:
                return name[len("builtins."):] if name.startswith("builtins.") else name
    except Exception:
        pass  # truncated or not a pickle: nothing to name
    return "unknown"


def _pickle_globals(data: bytes) -> Iterator[str]:
    # Protocols <= 3 name globals inline ("module name"); 4+ push the two
    # strings first and then STACK_GLOBAL.
    strings: List[str] = []
    for opcode, arg, _pos in pickletools.genops(data):
        if opcode.name == "GLOBAL":
            yield str(arg).replace(" ", ".", 1)
        elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
            yield f"{strings[-2]}.{strings[-1]}"
        elif isinstance(arg, str):
            strings.append(arg)
