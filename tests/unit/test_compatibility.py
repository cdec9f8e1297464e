"""Every public name and signature of DBOS Transact 2.31.1 exists here.

``api_2_31_1.json`` beside this file describes 2.31.1's public API: the
names of ``dbos.__all__``, the exception classes of ``dbos.error``, and for
each public class its members' parameters (name, kind, default), for each
TypedDict its keys. It is data, made once by running this file with the
reference installed (``python tests/unit/test_compatibility.py > api.json``
from a directory where ``import dbos`` finds DBOS Transact) and checked in.

The test fails on anything of it missing or different here, unless the
README's "Not supported, and why" section names it in backticks: ``Name``,
``Class.member``, ``Class.member(parameter)`` or ``TypedDict.key``. A few
signature differences that change nothing for a caller are listed below,
each with its reason. Extra members, and extra optional parameters, are fine.
"""

from __future__ import annotations

import enum
import inspect
import json
import re
import sys
import typing
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set

REPO = Path(__file__).resolve().parents[2]
REFERENCE = Path(__file__).with_name("api_2_31_1.json")
SECTION = "### Not supported, and why"

# Differences that change nothing a caller of the public API can see.
SAME_FOR_CALLERS: Dict[str, str] = {
    # Users call Debouncer.create(...), never the constructor.
    "Debouncer.__init__": "constructed by Debouncer.create",
    # Our datasources wrap an engine the caller may pass (README: datasources);
    # create(...) is the documented constructor, with the same parameters.
    "SQLAlchemyDatasource.__init__": "constructed by create(...) or from an engine",
    "AsyncSQLAlchemyDatasource.__init__": "constructed by create(...) or from an engine",
    # 2.31.1 misspells the key "deboucne_key"; callers pass it by position.
    "DebouncerClient.debounce_async": "2.31.1's parameter name is a typo",
    # 2.31.1 declares the abstract method with a first parameter named "cls".
    "Serializer.deserialize": "2.31.1's abstract signature names self 'cls'",
}

Params = List[List[str]]


# ----------------------------------------------------------------------
# Introspection: the same for the reference (when dumping) and for us
# ----------------------------------------------------------------------


def _default(p: inspect.Parameter) -> str:
    if p.default is inspect.Parameter.empty:
        return "<required>"
    if isinstance(p.default, enum.Enum):
        return f"{type(p.default).__name__}.{p.default.name}"
    text = repr(p.default)
    # An object's default repr holds its address: compare its type instead.
    return f"<{type(p.default).__name__}>" if " at 0x" in text else text


def _params(obj: Any) -> Optional[Params]:
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    return [[p.name, p.kind.name, _default(p)] for p in signature.parameters.values() if p.name != "self"]


def _member(cls: type, name: str) -> Dict[str, Any]:
    raw = inspect.getattr_static(cls, name)
    func = raw.__func__ if isinstance(raw, (classmethod, staticmethod)) else raw
    on_class = isinstance(raw, (classmethod, staticmethod))
    kind = "method" if inspect.isfunction(func) else "attribute"
    described: Dict[str, Any] = {"kind": kind, "on_class": on_class}
    if kind == "method":
        described["params"] = _params(getattr(cls, name))
        described["async"] = inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)
    return described


def _public(names: Iterator[str]) -> List[str]:
    return sorted(n for n in names if not n.startswith("_"))


def describe(obj: Any) -> Dict[str, Any]:
    """What a caller can see of one public name."""
    if isinstance(obj, type) and typing.is_typeddict(obj):
        return {"typeddict": sorted(obj.__annotations__)}
    if isinstance(obj, type) and issubclass(obj, enum.Enum):
        return {"enum": [m.name for m in obj]}
    if isinstance(obj, type):
        members = {n: _member(obj, n) for n in _public(iter(dir(obj)))}
        fields = sorted(getattr(obj, "__dataclass_fields__", {}))
        return {"init": _params(obj), "members": members, "fields": fields}
    if callable(obj):
        return {"params": _params(obj)}
    return {"value": type(obj).__name__}


def dump(module: Any) -> Dict[str, Any]:
    """The public API of ``module`` (``dbos``) as this test compares it."""
    names = sorted(n for n in module.__all__ if n != "error")
    errors = _public(n for n in dir(module.error)
                     if isinstance(getattr(module.error, n), type)
                     and issubclass(getattr(module.error, n), BaseException))
    described = {n: describe(getattr(module, n)) for n in names}
    described.update({f"error.{n}": {"init": _params(getattr(module.error, n))} for n in errors})
    return {"all": names, "errors": errors, "described": described}


# ----------------------------------------------------------------------
# The exceptions the README lists
# ----------------------------------------------------------------------


def readme_exceptions() -> Set[str]:
    """The names in backticks on the bullet lines of the README's section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no '{SECTION}' section"
    body = text.split(SECTION, 1)[1].split("\n#", 1)[0]
    bullets = re.split(r"\n(?=- )", body)  # a bullet runs on over its indented lines
    return {name for item in bullets if item.startswith("- ")
            for name in re.findall(r"`([^`]+)`", item.replace("\n", " "))}


# ----------------------------------------------------------------------
# The comparison
# ----------------------------------------------------------------------


def _param_gaps(where: str, theirs: Optional[Params], ours: Optional[Params], excused: Set[str]) -> List[str]:
    """Each of their parameters must be ours, of the same kind and default;
    a parameter only we have must be optional."""
    if theirs is None or ours is None or where in SAME_FOR_CALLERS:
        return []
    mine = {p[0]: p for p in ours}
    gaps = [f"{where}({p[0]}): {'missing' if p[0] not in mine else f'{mine[p[0]][1:]} != {p[1:]}'}"
            for p in theirs if not _same(p, mine.get(p[0])) and f"{where}({p[0]})" not in excused]
    known = {p[0] for p in theirs}
    gaps += [f"{where}({p[0]}): required here, absent in 2.31.1" for p in ours
             if p[0] not in known and p[2] == "<required>" and p[1] not in ("VAR_POSITIONAL", "VAR_KEYWORD")]
    return gaps


def _same(theirs: List[str], ours: Optional[List[str]]) -> bool:
    """The same parameter, or one we made optional where 2.31.1 required it."""
    if ours is None or ours[:2] != theirs[:2]:
        return False
    return ours[2] == theirs[2] or theirs[2] == "<required>"


def _member_gaps(cls: str, theirs: Dict[str, Any], ours: Dict[str, Any], excused: Set[str]) -> List[str]:
    gaps: List[str] = []
    for name, member in theirs.items():
        where = f"{cls}.{name}"
        if where in excused:
            continue
        mine = ours.get(name)
        if mine is None:
            gaps.append(f"{where}: missing")
        elif member["kind"] == "method":
            if (mine["kind"], mine["on_class"], mine.get("async")) != ("method", member["on_class"],
                                                                        member["async"]):
                gaps.append(f"{where}: {mine} is not like {member}")
            gaps += _param_gaps(where, member["params"], mine.get("params"), excused)
    return gaps


def _name_gaps(name: str, theirs: Dict[str, Any], ours: Dict[str, Any], excused: Set[str]) -> List[str]:
    if "typeddict" in theirs:  # a dataclass we kept holds the same keys as fields (and takes info["key"])
        keys = set(ours.get("typeddict") or ours.get("fields") or [])
        return [f"{name}.{k}: missing key" for k in theirs["typeddict"]
                if k not in keys and f"{name}.{k}" not in excused]
    if "enum" in theirs:
        return [f"{name}.{m}: missing member" for m in theirs["enum"]
                if m not in (ours.get("enum") or []) and f"{name}.{m}" not in excused]
    gaps = _param_gaps(f"{name}.__init__" if "init" in theirs else name,
                       theirs.get("init", theirs.get("params")), ours.get("init", ours.get("params")), excused)
    return gaps + _member_gaps(name, theirs.get("members", {}), ours.get("members", {}), excused)


def compatibility_gaps(reference: Dict[str, Any], ours: Dict[str, Any], excused: Set[str]) -> List[str]:
    """Everything of ``reference`` that ``ours`` lacks, unless ``excused``."""
    gaps = [f"{n}: not in dbos.__all__" for n in reference["all"] if n not in ours["all"] and n not in excused]
    gaps += [f"error.{n}: missing" for n in reference["errors"]
             if n not in ours["errors"] and f"error.{n}" not in excused and n not in excused]
    for name, theirs in reference["described"].items():
        if name in ours["described"]:
            gaps += _name_gaps(name, theirs, ours["described"][name], excused)
    return gaps


# ----------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------


def test_every_public_name_and_signature_of_2_31_1_is_here_or_listed_as_unsupported() -> None:
    import dbos

    gaps = compatibility_gaps(json.loads(REFERENCE.read_text()), dump(dbos), readme_exceptions())
    assert gaps == [], "missing or different from DBOS Transact 2.31.1:\n" + "\n".join(gaps)


def test_the_reference_list_is_the_whole_of_2_31_1s_api() -> None:
    reference = json.loads(REFERENCE.read_text())
    # The names spec section 0 lists, so that a truncated list cannot pass.
    assert len(reference["all"]) == 37 and {"DBOS", "DBOSClient", "KafkaMessage", "SendMessage"} <= set(
        reference["all"])
    assert {"send_in_transaction", "enqueue_in_transaction"} <= set(
        reference["described"]["DBOSClient"]["members"])
    assert "DBOSStreamNondeterminismError" in reference["errors"]


def test_the_check_finds_a_missing_name_a_missing_parameter_and_a_changed_default() -> None:
    reference = {"all": ["A", "B"], "errors": [], "described": {
        "A": {"init": [["x", "POSITIONAL_OR_KEYWORD", "1"]], "members": {
            "m": {"kind": "method", "on_class": True, "async": False,
                  "params": [["p", "KEYWORD_ONLY", "None"]]}}}}}
    ours = {"all": ["A"], "errors": [], "described": {
        "A": {"init": [["x", "POSITIONAL_OR_KEYWORD", "2"]], "members": {
            "m": {"kind": "method", "on_class": True, "async": False, "params": []}}}}}
    assert compatibility_gaps(reference, ours, set()) == [
        "B: not in dbos.__all__",
        "A.__init__(x): ['POSITIONAL_OR_KEYWORD', '2'] != ['POSITIONAL_OR_KEYWORD', '1']",
        "A.m(p): missing",
    ]
    assert compatibility_gaps(reference, ours, {"B", "A.__init__(x)", "A.m(p)"}) == []


def test_every_listed_exception_names_something_of_2_31_1() -> None:
    """A misspelt line would excuse nothing: each name listed must be one of 2.31.1's."""
    reference = json.loads(REFERENCE.read_text())
    known = set(reference["all"]) | {f"error.{e}" for e in reference["errors"]}
    for name, theirs in reference["described"].items():
        known |= {f"{name}.{k}" for k in theirs.get("typeddict", [])}
        for member, described in theirs.get("members", {}).items():
            known.add(f"{name}.{member}")
            known |= {f"{name}.{member}({p[0]})" for p in described.get("params") or []}
    named = {n for n in readme_exceptions() if "*" not in n}  # a name with "*" names a family
    assert sorted(named - known) == []


if __name__ == "__main__":  # the dump this test compares with: run it against the reference
    import dbos as _dbos

    json.dump(dump(_dbos), sys.stdout, indent=1, sort_keys=True)
    print()
