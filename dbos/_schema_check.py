"""The configuration's JSON Schema, and a quick yes to what it accepts, without jsonschema.

Importing jsonschema (with attrs and referencing) takes about 40 ms, which
every process paid in ``DBOS()`` and every ``dbos`` command given a
configuration: most of a launch. ``conforms`` checks a value against the
few keywords ``config.schema.json`` uses and answers True only when the
value meets every one of them, with jsonschema's meaning (a bool is not an
integer, ``pattern`` searches). Anything else, a value that breaks a rule
or a keyword it does not know, answers False, and the caller asks
jsonschema, whose verdict and messages stay the only ones a user sees.
"""

from __future__ import annotations

import copy
import json
import re
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator

Schema = Mapping[str, Any]


@lru_cache(maxsize=1)
def config_schema_read() -> Dict[str, Any]:
    """``config.schema.json`` as read once (not to be changed: see ``config_schema``)."""
    schema: Dict[str, Any] = json.loads(resources.files("dbos").joinpath("config.schema.json").read_text())
    return schema


def config_schema() -> Dict[str, Any]:
    """The JSON Schema both configuration sources are validated against (a copy)."""
    return copy.deepcopy(config_schema_read())


@lru_cache(maxsize=1)
def jsonschema_validator() -> "Draft202012Validator":
    """jsonschema's validator of the schema, imported only when first asked for."""
    from jsonschema import Draft202012Validator
    return Draft202012Validator(config_schema_read())

# Keywords that say nothing about validity.
_NOTES = frozenset({"$schema", "$id", "$defs", "title", "description", "x-rule", "default", "examples"})

_TYPES: Dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def conforms(value: Any, schema: Schema, root: Schema) -> bool:
    """Whether ``value`` surely meets ``schema`` (``root`` resolves ``$ref``)."""
    for keyword, rule in schema.items():
        if keyword in _NOTES:
            continue
        check = _KEYWORDS.get(keyword)
        if check is None or not check(value, rule, schema, root):
            return False
    return True


def _type(value: Any, rule: Any, schema: Schema, root: Schema) -> bool:
    names = rule if isinstance(rule, list) else [rule]
    return any(name in _TYPES and _TYPES[name](value) for name in names)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _properties(value: Any, rule: Any, schema: Schema, root: Schema) -> bool:
    if not isinstance(value, dict):
        return True
    return all(conforms(value[key], sub, root) for key, sub in rule.items() if key in value)


def _additional(value: Any, rule: Any, schema: Schema, root: Schema) -> bool:
    if not isinstance(value, dict) or rule is True:
        return True
    known = schema.get("properties", {})
    extra = [key for key in value if key not in known]
    if rule is False:
        return not extra
    return all(conforms(value[key], rule, root) for key in extra)


def _items(value: Any, rule: Any, schema: Schema, root: Schema) -> bool:
    return not isinstance(value, list) or all(conforms(item, rule, root) for item in value)


def _ref(value: Any, rule: Any, schema: Schema, root: Schema) -> bool:
    if not isinstance(rule, str) or not rule.startswith("#/"):
        return False
    target: Any = root
    for part in rule[2:].split("/"):
        if not isinstance(target, dict) or part not in target:
            return False
        target = target[part]
    return conforms(value, target, root)


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> "re.Pattern[str]":
    return re.compile(pattern)


_KEYWORDS: Dict[str, Callable[[Any, Any, Schema, Schema], bool]] = {
    "type": _type,
    "enum": lambda v, rule, s, r: any(v == choice and type(v) is type(choice) for choice in rule),
    "minLength": lambda v, rule, s, r: not isinstance(v, str) or len(v) >= rule,
    "maxLength": lambda v, rule, s, r: not isinstance(v, str) or len(v) <= rule,
    "pattern": lambda v, rule, s, r: not isinstance(v, str) or _compiled(rule).search(v) is not None,
    "minimum": lambda v, rule, s, r: not _number(v) or v >= rule,
    "maximum": lambda v, rule, s, r: not _number(v) or v <= rule,
    "exclusiveMinimum": lambda v, rule, s, r: not _number(v) or v > rule,
    "required": lambda v, rule, s, r: not isinstance(v, dict) or all(key in v for key in rule),
    "properties": _properties,
    "additionalProperties": _additional,
    "items": _items,
    "$ref": _ref,
    "anyOf": lambda v, rule, s, r: any(conforms(v, sub, r) for sub in rule),
}
