"""Serialization of inputs, outputs and recorded errors (``dbos.serialization``).

No database: these tests drive ``Codec`` directly, the way the engine does.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import json
import pickle
import sys
import threading
import types
from typing import Any, Callable, Dict, Iterator, List

import pytest

from dbos.error import (
    DBOSException,
    DBOSMaxStepRetriesExceeded,
    DBOSNonExistentWorkflowError,
    DBOSRecordedError,
    DBOSSerializationError,
    DBOSWorkflowCancelledError,
)
from dbos import SendMessage, WorkflowHandle, WorkflowStatus
from dbos._serialization import Codec, DefaultSerializer, Serializer

# -- module-level fixtures (pickle finds classes by module and name) ---------


@dataclasses.dataclass
class Order:
    order_id: str
    items: List[str]
    total: decimal.Decimal


class PaymentError(Exception):
    """Pickles and unpickles: every constructor argument is passed to super()."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message, code)
        self.code = code


class TwoArgError(Exception):
    """Pickles, but unpickling calls TwoArgError(message) and fails (issue #371)."""

    def __init__(self, account: str, amount: int) -> None:
        super().__init__(f"account {account} lacks {amount}")
        self.account = account


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


class JsonSerializer(Serializer):
    """A custom serializer: exactly what JSON can hold, nothing else."""

    def serialize(self, data: Any) -> str:
        return json.dumps(data)

    def deserialize(self, serialized_data: str) -> Any:
        return json.loads(serialized_data)

    def name(self) -> str:
        return "json"


class UnnamedSerializer(Serializer):
    """Does not override name()."""

    def serialize(self, data: Any) -> str:
        return repr(data)

    def deserialize(self, serialized_data: str) -> Any:
        return serialized_data


class SizeLimitedSerializer(DefaultSerializer):
    """Rejects large payloads, so arguments can each fit but not together."""

    def serialize(self, data: Any) -> str:
        text = super().serialize(data)
        if len(text) > 400:
            raise ValueError(f"payload of {len(text)} characters exceeds 400")
        return text


class CountingSerializer(DefaultSerializer):
    def __init__(self) -> None:
        self.deserialize_calls = 0

    def deserialize(self, serialized_data: str) -> Any:
        self.deserialize_calls += 1
        return super().deserialize(serialized_data)


def module_level_function() -> int:
    return 1


@pytest.fixture
def codec() -> Codec:
    return Codec()


# -- values --------------------------------------------------------------------

VALUES: List[Any] = [
    None,
    0,
    -17,
    2**100,
    3.25,
    True,
    "",
    "héllo, 世界",
    b"\x00\xffraw",
    [1, "two", None],
    (1, ("nested", [2.5])),
    {"a": [1, {"b": None}], "c": {"d": (1, 2)}},
    {3, 1, 2},
    datetime.datetime(2024, 5, 17, 13, 45, 1, 123456, tzinfo=datetime.timezone.utc),
    datetime.date(2024, 2, 29),
    decimal.Decimal("12.30"),
    Order("o-1", ["book", "pen"], decimal.Decimal("9.99")),
    module_level_function,
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_values_round_trip_with_their_type(codec: Codec, value: Any) -> None:
    text = codec.dump_value(value, what="the output of step 's'")
    assert isinstance(text, str) and text.isascii()
    restored = codec.load_value(text)
    assert restored == value
    assert type(restored) is type(value)


def test_default_format_is_base64_of_pickle(codec: Codec) -> None:
    # Other DBOS implementations read the same rows: the format is the contract.
    value = {"k": [1, 2, 3]}
    text = codec.dump_value(value, what="v")
    raw = base64.b64decode(text)
    assert pickle.loads(raw) == value
    assert raw[:2] == b"\x80\x05"  # protocol 5, readable by every supported Python
    assert codec.load_value(base64.b64encode(pickle.dumps(value, protocol=2)).decode()) == value


def test_none_is_stored_as_a_value_and_missing_text_loads_as_none(codec: Codec) -> None:
    text = codec.dump_value(None, what="v")
    assert text  # a step returning None is recorded, not confused with "no output"
    assert codec.load_value(text) is None
    assert codec.load_value(None) is None


def test_serializer_names() -> None:
    assert DefaultSerializer().name() == "py_pickle"
    assert UnnamedSerializer().name() == "custom_serializer"
    assert isinstance(Codec().serializer, DefaultSerializer)
    assert isinstance(Codec(None).serializer, DefaultSerializer)


def test_unpicklable_output_names_it(codec: Codec) -> None:
    with pytest.raises(DBOSSerializationError) as info:
        codec.dump_value(threading.Lock(), what="the output of step 'charge'")
    assert info.value.what == "the output of step 'charge'"
    assert "cannot pickle '_thread.lock' object" in info.value.reason
    assert "the output of step 'charge'" in str(info.value)
    assert isinstance(info.value, DBOSException)
    assert isinstance(info.value.__cause__, TypeError)


def test_writing_a_value_does_not_read_it_back() -> None:
    # dump_value is on every step's hot path: a single serialize call.
    serializer = CountingSerializer()
    text = Codec(serializer).dump_value(TwoArgError("a", 1), what="v")
    assert serializer.deserialize_calls == 0
    with pytest.raises(DBOSSerializationError):  # and so it fails only when read
        Codec(serializer).load_value(text)


@pytest.mark.parametrize("text", ["not base64 at all!", base64.b64encode(b"junk").decode(), ""])
def test_corrupt_value_raises_serialization_error(codec: Codec, text: str) -> None:
    with pytest.raises(DBOSSerializationError) as info:
        codec.load_value(text)
    assert info.value.what == "a recorded value"
    assert info.value.reason
    # A read failure points at the writer's serializer, not at the values passed.
    assert "Cannot deserialize a recorded value" in str(info.value) and "serializer" in str(info.value)


# -- inputs --------------------------------------------------------------------


def test_inputs_round_trip(codec: Codec) -> None:
    args = (1, "two", Order("o", [], decimal.Decimal(0)), None)
    kwargs: Dict[str, Any] = {"when": datetime.date(2024, 1, 1), "tags": {"a", "b"}}
    text = codec.dump_inputs(args, kwargs, workflow_name="checkout")
    assert codec.load_inputs(text) == (args, kwargs)
    # Stored as one value, {"args": ..., "kwargs": ...}.
    assert codec.serializer.deserialize(text) == {"args": args, "kwargs": kwargs}


def test_empty_inputs_round_trip(codec: Codec) -> None:
    loaded = codec.load_inputs(codec.dump_inputs((), {}, workflow_name="w"))
    assert loaded == ((), {})
    assert type(loaded[0]) is tuple and type(loaded[1]) is dict


def test_unpicklable_positional_argument_is_named_by_position(codec: Codec) -> None:
    with pytest.raises(DBOSSerializationError) as info:
        codec.dump_inputs(("ok", threading.Lock(), 3), {"x": 1}, workflow_name="checkout")
    # Positions are 1-based: the lock is args[1], "argument 2".
    assert info.value.what == "argument 2 of workflow 'checkout'"
    assert "cannot pickle '_thread.lock' object" in info.value.reason
    assert "argument 2 of workflow 'checkout'" in str(info.value)


@pytest.mark.parametrize(
    "bad, fragment",
    [(threading.Lock(), "_thread.lock"), (lambda: 1, "lambda")],
    ids=["lock", "lambda"],
)
def test_unpicklable_keyword_argument_is_named(codec: Codec, bad: Any, fragment: str) -> None:
    kwargs = {"amount": 5, "conn": bad}
    with pytest.raises(DBOSSerializationError) as info:
        codec.dump_inputs((1, 2), kwargs, workflow_name="checkout")
    assert info.value.what == "keyword argument 'conn' of workflow 'checkout'"
    assert fragment in info.value.reason


def test_instance_of_local_class_is_named(codec: Codec) -> None:
    class Local:
        pass

    with pytest.raises(DBOSSerializationError) as info:
        codec.dump_inputs((Local(),), {}, workflow_name="w")
    assert info.value.what == "argument 1 of workflow 'w'"
    assert "Local" in info.value.reason


def test_inputs_failing_only_together_name_the_workflow() -> None:
    codec = Codec(SizeLimitedSerializer())
    args = ("x" * 200, "y" * 200)
    with pytest.raises(DBOSSerializationError) as info:
        codec.dump_inputs(args, {}, workflow_name="bulk")
    assert info.value.what == "the inputs of workflow 'bulk'"
    assert "exceeds 400" in info.value.reason
    assert codec.load_inputs(codec.dump_inputs(args[:1], {}, workflow_name="bulk")) == (args[:1], {})


@pytest.mark.parametrize("stored", [[1, 2], {"args": (1,)}, {"args": 5, "kwargs": {}}])
def test_inputs_of_the_wrong_shape_raise(codec: Codec, stored: Any) -> None:
    with pytest.raises(DBOSSerializationError) as info:
        codec.load_inputs(codec.serializer.serialize(stored))
    assert info.value.what == "the recorded workflow inputs"


def test_corrupt_inputs_raise(codec: Codec) -> None:
    with pytest.raises(DBOSSerializationError) as info:
        codec.load_inputs("%%%")
    assert info.value.what == "the recorded workflow inputs"


# -- errors --------------------------------------------------------------------


def test_custom_exception_round_trips_with_type_and_attributes(codec: Codec) -> None:
    exc = PaymentError("card declined", code=402)
    exc.retry_after = 30  # type: ignore[attr-defined]
    restored = codec.load_error(codec.dump_error(exc))
    assert type(restored) is PaymentError
    assert restored.args == ("card declined", 402)
    assert restored.code == 402
    assert restored.retry_after == 30  # type: ignore[attr-defined]


def test_builtin_exception_round_trips(codec: Codec) -> None:
    restored = codec.load_error(codec.dump_error(KeyError("missing")))
    assert type(restored) is KeyError and restored.args == ("missing",)


def test_exception_failing_to_unpickle_is_recorded_as_stand_in(codec: Codec) -> None:
    exc = TwoArgError("acct-9", 100)
    # Precondition: pickling alone would not catch this.
    with pytest.raises(TypeError):
        pickle.loads(pickle.dumps(exc))
    restored = codec.load_error(codec.dump_error(exc))
    assert isinstance(restored, DBOSRecordedError)
    assert restored.type_name == f"{__name__}.TwoArgError"
    assert restored.error_message == "account acct-9 lacks 100"


def test_exception_with_unpicklable_attribute_is_recorded_as_stand_in(codec: Codec) -> None:
    exc = ValueError("boom")
    exc.lock = threading.Lock()  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        pickle.dumps(exc)
    restored = codec.load_error(codec.dump_error(exc))
    assert isinstance(restored, DBOSRecordedError)
    assert restored.type_name == "ValueError"
    assert restored.error_message == "boom"


def test_dump_error_survives_a_broken_str(codec: Codec) -> None:
    exc = UnprintableError()
    exc.lock = threading.Lock()  # type: ignore[attr-defined]
    restored = codec.load_error(codec.dump_error(exc))
    assert isinstance(restored, DBOSRecordedError)
    assert restored.type_name == f"{__name__}.UnprintableError"
    assert "str() failed" in restored.error_message


def test_only_errors_are_read_back_when_written() -> None:
    serializer = CountingSerializer()
    Codec(serializer).dump_error(PaymentError("x"))
    assert serializer.deserialize_calls == 1


@pytest.fixture
def vanishing_module() -> Iterator[types.ModuleType]:
    """A module that exists while errors are recorded and can then disappear."""
    name = "dbos_test_vanishing_module"
    module = types.ModuleType(name)
    exec(
        "from dbos.error import DBOSException\n"
        "class GoneError(Exception):\n"
        "    pass\n"
        "class GoneDBOSError(DBOSException):\n"
        "    def __init__(self, what):\n"
        "        super().__init__(f'{what} is gone')\n",
        module.__dict__,
    )
    sys.modules[name] = module
    yield module
    sys.modules.pop(name, None)


def _remove_module(module: types.ModuleType) -> None:
    del sys.modules[module.__name__]


def _rename_classes(module: types.ModuleType) -> None:
    del module.GoneError, module.GoneDBOSError


@pytest.mark.parametrize("make_unloadable", [_remove_module, _rename_classes], ids=["module", "class"])
@pytest.mark.parametrize(
    "class_name, build",
    [("GoneError", lambda cls: cls("it went")), ("GoneDBOSError", lambda cls: cls("it"))],
    ids=["exception", "dbos-exception"],
)
def test_error_whose_class_disappeared_names_the_class(
    codec: Codec,
    vanishing_module: types.ModuleType,
    make_unloadable: Callable[[types.ModuleType], None],
    class_name: str,
    build: Callable[[type], BaseException],
) -> None:
    text = codec.dump_error(build(getattr(vanishing_module, class_name)))
    assert type(codec.load_error(text)).__name__ == class_name  # restorable while it exists
    make_unloadable(vanishing_module)
    restored = codec.load_error(text)
    assert isinstance(restored, DBOSRecordedError)
    assert restored.type_name == f"dbos_test_vanishing_module.{class_name}"
    assert restored.error_message.startswith("could not be restored: ")
    assert "dbos_test_vanishing_module" in restored.error_message


def test_garbage_error_text_gives_unknown_stand_in(codec: Codec) -> None:
    restored = codec.load_error("definitely not a pickle")
    assert isinstance(restored, DBOSRecordedError)
    assert restored.type_name == "unknown"
    assert restored.error_message.startswith("could not be restored: ")


def test_non_exception_recorded_as_error_is_wrapped(codec: Codec) -> None:
    restored = codec.load_error(codec.dump_value({"code": 7}, what="v"))
    assert isinstance(restored, DBOSRecordedError)
    assert restored.type_name == "dict"
    assert "{'code': 7}" in restored.error_message


def _same_error(restored: BaseException, original: BaseException) -> None:
    assert type(restored) is type(original)
    assert str(restored) == str(original)
    assert restored.args == original.args


@pytest.mark.parametrize(
    "exc",
    [
        DBOSNonExistentWorkflowError("target", "wf-1"),
        DBOSWorkflowCancelledError("wf-2 was cancelled"),
        DBOSSerializationError("argument 1 of workflow 'w'", "TypeError: nope"),
        DBOSRecordedError("mod.Err", "text"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_dbos_errors_round_trip(codec: Codec, exc: BaseException) -> None:
    restored = codec.load_error(codec.dump_error(exc))
    _same_error(restored, exc)
    assert vars(restored) == vars(exc)


def test_max_step_retries_exceeded_round_trips_with_its_errors(codec: Codec) -> None:
    exc = DBOSMaxStepRetriesExceeded("charge", 3, [ValueError("a"), PaymentError("b", 2)])
    restored = codec.load_error(codec.dump_error(exc))
    assert isinstance(restored, DBOSMaxStepRetriesExceeded)
    _same_error(restored, exc)
    assert (restored.step_name, restored.max_retries, restored.dbos_error_code) == ("charge", 3, 7)
    assert [(type(e), e.args) for e in restored.errors] == [
        (ValueError, ("a",)),
        (PaymentError, ("b", 2)),
    ]


def test_max_step_retries_holding_an_unrestorable_error_becomes_stand_in(codec: Codec) -> None:
    exc = DBOSMaxStepRetriesExceeded("charge", 1, [TwoArgError("a", 1)])
    restored = codec.load_error(codec.dump_error(exc))
    assert isinstance(restored, DBOSRecordedError)
    assert restored.type_name == "dbos.error.DBOSMaxStepRetriesExceeded"
    assert restored.error_message == str(exc)


# -- a custom serializer ---------------------------------------------------------


@pytest.fixture
def json_codec() -> Codec:
    return Codec(JsonSerializer())


def test_custom_serializer_is_used_and_named(json_codec: Codec) -> None:
    assert json_codec.serializer.name() == "json"
    text = json_codec.dump_value({"a": [1, 2]}, what="v")
    assert json.loads(text) == {"a": [1, 2]}
    assert json_codec.load_value(text) == {"a": [1, 2]}


def test_custom_serializer_inputs_come_back_as_tuple_and_dict(json_codec: Codec) -> None:
    text = json_codec.dump_inputs((1, "a"), {"k": [True]}, workflow_name="w")
    assert json.loads(text) == {"args": [1, "a"], "kwargs": {"k": [True]}}
    assert json_codec.load_inputs(text) == ((1, "a"), {"k": [True]})


def test_custom_serializer_failures_name_the_culprit(json_codec: Codec) -> None:
    with pytest.raises(DBOSSerializationError) as info:
        json_codec.dump_inputs((1,), {"when": datetime.date(2024, 1, 1)}, workflow_name="w")
    assert info.value.what == "keyword argument 'when' of workflow 'w'"
    assert "not JSON serializable" in info.value.reason
    with pytest.raises(DBOSSerializationError) as info:
        json_codec.dump_value(object(), what="the output of workflow 'w'")
    assert info.value.what == "the output of workflow 'w'"


def test_custom_serializer_without_exception_support_records_stand_in(json_codec: Codec) -> None:
    text = json_codec.dump_error(PaymentError("declined", 5))
    assert json.loads(text) == {
        "type_name": f"{__name__}.PaymentError",
        "error_message": "('declined', 5)",
    }
    restored = json_codec.load_error(text)
    assert isinstance(restored, DBOSRecordedError)
    assert (restored.type_name, restored.error_message) == (f"{__name__}.PaymentError", "('declined', 5)")


def test_serializer_that_stores_nothing_never_breaks_dump_error() -> None:
    class Broken(Serializer):
        def serialize(self, data: Any) -> str:
            raise RuntimeError("disk full")

        def deserialize(self, serialized_data: str) -> Any:
            raise RuntimeError("disk full")

    codec = Codec(Broken())
    text = codec.dump_error(ValueError("v"))
    assert text == "ValueError: v"
    restored = codec.load_error(text)
    assert isinstance(restored, DBOSRecordedError)
    assert restored.type_name == "unknown"
    assert "disk full" in restored.error_message



# [WorkflowStatus, WorkflowHandle('x'), SendMessage('d', 1)] as this library
# pickled them before its modules moved (dbos.status, dbos.handle,
# dbos.communication): a row recorded then must still load.
RECORDED_BEFORE_THE_MOVE = (
    "gAWV9gAAAAAAAABdlCiMC2Rib3Muc3RhdHVzlIwOV29ya2Zsb3dTdGF0dXOUk5QpgZR9lCiMC3dvcmtmbG93X2lklI"
    "wBd5SMBnN0YXR1c5SMB1NVQ0NFU1OUjARuYW1llIwBZpR1YowLZGJvcy5oYW5kbGWUjA5Xb3JrZmxvd0hhbmRsZZST"
    "lCmBlH2UaAaMAXiUc2KMEmRib3MuY29tbXVuaWNhdGlvbpSMC1NlbmRNZXNzYWdllJOUKYGUfZQojA5kZXN0aW5hdG"
    "lvbl9pZJSMAWSUjAdtZXNzYWdllEsBjAV0b3BpY5ROjA9pZGVtcG90ZW5jeV9rZXmUTnViZS4="
)


def test_values_recorded_under_the_old_module_names_still_load() -> None:
    status, handle, message = DefaultSerializer().deserialize(RECORDED_BEFORE_THE_MOVE)
    assert isinstance(status, WorkflowStatus) and status.workflow_id == "w"
    assert isinstance(handle, WorkflowHandle) and handle.workflow_id == "x"
    assert isinstance(message, SendMessage) and message.message == 1
