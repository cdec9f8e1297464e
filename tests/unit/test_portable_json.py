"""Portable JSON without a database: conversions, the codec's formats, errors, date hints."""

from __future__ import annotations

import datetime
import json
import pickle
from decimal import Decimal
from typing import Any, Dict, Optional

import pytest

from dbos import (
    DBOSPortableJSONSerializer,
    DefaultSerializer,
    PortableWorkflowError,
    Serializer,
    WorkflowSerializationFormat,
)
from dbos._portable_json import coerce_to_hints, error_data, format_of, inputs_from_text, to_json_text
from dbos._serialization import Codec
from dbos.error import DBOSInvalidArgumentError, DBOSSerializationError, DBOSUnknownSerializationError


class Upper(Serializer):
    """A configured serializer other than pickle."""

    def serialize(self, data: Any) -> str:
        return json.dumps(data).upper()

    def deserialize(self, serialized_data: str) -> Any:
        return json.loads(serialized_data.lower())

    def name(self) -> str:
        return "upper"


def test_the_format_enum_matches_dbos_transact() -> None:
    assert [(f.name, f.value) for f in WorkflowSerializationFormat] == [
        ("PORTABLE", "portable"), ("NATIVE", "native"), ("DEFAULT", "None")]
    assert isinstance(WorkflowSerializationFormat.PORTABLE, str)
    assert [format_of(t) for t in (None, WorkflowSerializationFormat.DEFAULT, "portable", "native")] == [
        None, None, "portable_json", "py_pickle"]
    with pytest.raises(DBOSInvalidArgumentError, match="Invalid serialization_type 'json'.*PORTABLE"):
        format_of("json")


def test_values_become_plain_json() -> None:
    moment = datetime.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    value = {"t": moment, "naive": datetime.datetime(2024, 1, 2), "d": datetime.date(2024, 1, 2),
             "money": Decimal("1.50"), "pair": (1, "two"), "set": {3}, "text": "é", "none": None}
    assert to_json_text(value) == (
        '{"t":"2024-01-02T01:04:05.678Z","naive":"2024-01-02T00:00:00.000Z","d":"2024-01-02",'
        '"money":"1.50","pair":[1,"two"],"set":[3],"text":"é","none":null}')
    assert DBOSPortableJSONSerializer().serialize([True, 1.5]) == "[true,1.5]"
    assert DBOSPortableJSONSerializer().deserialize('{"a":[1]}') == {"a": [1]}
    assert DBOSPortableJSONSerializer().name() == "portable_json"


@pytest.mark.parametrize("value, reason", [
    (object(), "Object of type object is not portable JSON serializable"),
    ({1: "a"}, "dict key of type int"),
    (b"bytes", "Object of type bytes"),
])
def test_what_json_cannot_carry_is_refused(value: Any, reason: str) -> None:
    with pytest.raises(TypeError, match=reason):
        to_json_text(value)
    with pytest.raises(ValueError):
        to_json_text(float("inf"))


def test_portable_codec_names_the_argument_it_cannot_store() -> None:
    codec = Codec().for_type(WorkflowSerializationFormat.PORTABLE)
    assert codec.column == "portable_json"
    assert json.loads(codec.dump_inputs((1, "a"), {"k": [2]}, workflow_name="wf")) == {
        "positionalArgs": [1, "a"], "namedArgs": {"k": [2]}}
    with pytest.raises(PortableWorkflowError, match="argument 2 of workflow 'wf' as portable JSON"):
        codec.dump_inputs((1, object()), {}, workflow_name="wf")
    with pytest.raises(PortableWorkflowError, match="keyword argument 'when' of workflow 'wf'"):
        codec.dump_inputs((), {"when": 1j}, workflow_name="wf")
    with pytest.raises(PortableWorkflowError, match="the message to x"):
        codec.dump_value({1, object()}, what="the message to x")


def test_inputs_from_other_languages_may_leave_parts_out() -> None:
    assert inputs_from_text('{"positionalArgs":[1]}') == ((1,), {})
    assert inputs_from_text('{"namedArgs":{"a":1},"positionalArgs":null}') == ((), {"a": 1})
    codec = Codec().for_stored("portable_json")
    with pytest.raises(DBOSSerializationError, match="portable workflow inputs"):
        codec.load_inputs("[1, 2]")


class Coded(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = 409
        self.details = {"at": datetime.date(2024, 1, 1), "who": object()}


def test_errors_are_stored_as_name_message_code_and_data() -> None:
    data = error_data(Coded("conflict"), "conflict")
    assert data["name"] == "Coded" and data["message"] == "conflict" and data["code"] == 409
    assert isinstance(data["data"], str)  # an object JSON cannot carry: kept as text
    codec = Codec().for_stored("portable_json")
    restored = codec.load_error(codec.dump_error(KeyError("k")))
    assert isinstance(restored, PortableWorkflowError)
    assert (restored.name, restored.code) == ("KeyError", None)
    own = PortableWorkflowError("boom", "TSError", "E1", {"retry": False})
    again = codec.load_error(codec.dump_error(own))
    assert isinstance(again, PortableWorkflowError)
    assert (again.message, again.name, again.code, again.data) == ("boom", "TSError", "E1", {"retry": False})
    assert str(again) == "boom"


def test_portable_workflow_error_pickles() -> None:
    error = PortableWorkflowError("m", "N", 3, [1])
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.name, copy.code, copy.data) == ("m", "N", 3, [1])


def test_each_stored_format_reads_with_its_own_codec() -> None:
    home = Codec(Upper())
    assert home.for_stored(None) is home and home.for_stored("upper") is home
    native = home.for_type(WorkflowSerializationFormat.NATIVE)
    assert native.column == "py_pickle" and isinstance(native.serializer, DefaultSerializer)
    assert native.for_stored(None) is home  # every derived codec leads back to the configured one
    assert home.for_stored("portable_json") is home.for_stored("portable_json")
    with pytest.raises(DBOSUnknownSerializationError, match="stored as 'js_superjson'.*\\('upper'\\)"):
        home.for_stored("js_superjson")
    plain = Codec()
    assert plain.for_type(WorkflowSerializationFormat.NATIVE) is plain  # pickle is what it writes anyway


def planner(day: datetime.date, at: Optional[datetime.datetime], when: datetime.datetime, note: str,
            **rest: Any) -> None:
    pass


class Calendar:
    def book(self, day: datetime.date) -> None:
        pass


def test_dates_come_back_where_the_hints_ask_for_them() -> None:
    args, kwargs = coerce_to_hints(planner, ("2024-05-06", "2024-05-06T07:08:09.123Z"),
                                   {"when": "2024-05-06T07:08:09Z", "note": "2024-05-06", "x": "2024-05-06"},
                                   bound=False)
    assert args == (datetime.date(2024, 5, 6), "2024-05-06T07:08:09.123Z")  # Optional[...] is left alone
    expected: Dict[str, Any] = {"when": datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc),
                                "note": "2024-05-06", "x": "2024-05-06"}
    assert kwargs == expected
    assert coerce_to_hints(planner, ("not a date",), {}, bound=False) == (("not a date",), {})
    assert coerce_to_hints(Calendar.book, ("2024-05-06",), {}, bound=True) == ((datetime.date(2024, 5, 6),), {})


def test_portable_json_configured_as_the_serializer_writes_the_portable_shapes() -> None:
    codec = Codec.of(DBOSPortableJSONSerializer())
    assert codec.column == "portable_json" and codec.for_stored(None) is codec
    assert codec.for_stored("portable_json") is codec
    assert json.loads(codec.dump_inputs((1,), {}, workflow_name="wf")) == {"positionalArgs": [1], "namedArgs": {}}
    assert isinstance(codec.for_stored("py_pickle").serializer, DefaultSerializer)
    assert type(Codec.of(None)) is Codec and Codec.of(None).column is None
