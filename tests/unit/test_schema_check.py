"""The quick schema check never passes what jsonschema refuses, and spares a valid launch the import."""

from __future__ import annotations

import itertools
import subprocess
import sys
from typing import Any, Dict, Iterator, List

from jsonschema import Draft202012Validator


from dbos._schema_check import config_schema, conforms

SCHEMA = config_schema()
VALIDATOR = Draft202012Validator(SCHEMA)

# Values of every JSON kind, and the edges the schema's rules turn on.
PROBES: List[Any] = [
    None, True, False, 0, 1, -1, 1.0, 1.5, 0.0, 2**40, "", "a", "ab", "abc", "my-app", "My App",
    "postgresql://u@h/db", "sqlite:///x.sqlite", "mysql://h/db", "dbos", "9schema", "a" * 300,
    [], ["a"], [1], {}, {"a": 1},
]


def _properties(schema: Dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, sub in schema.get("properties", {}).items():
        yield prefix + key


def _configs() -> Iterator[Dict[str, Any]]:
    base: Dict[str, Any] = {"name": "probe-app", "system_database_url": "sqlite:///probe.sqlite"}
    yield base
    for key, value in itertools.product(list(_properties(SCHEMA)) + ["unknown_key"], PROBES):
        yield {**base, key: value}
    for name in PROBES:
        yield {"name": name}


def test_a_configuration_the_quick_check_passes_is_one_jsonschema_accepts() -> None:
    passed = refused = 0
    for config in _configs():
        if conforms(config, SCHEMA, SCHEMA):
            assert not list(VALIDATOR.iter_errors(config)), config
            passed += 1
        else:
            refused += 1
    # Both answers occur, so the comparison above meant something.
    assert passed > 50 and refused > 50


def test_keywords_it_does_not_know_are_left_to_jsonschema() -> None:
    assert not conforms("x", {"type": "string", "format": "email"}, {})
    assert not conforms({"a": 1}, {"type": "object", "patternProperties": {"^a$": {"type": "integer"}}}, {})
    assert not conforms(1, {"$ref": "#/$defs/missing"}, {})
    assert conforms(1, {"type": "integer", "minimum": 1, "description": "a note"}, {})
    assert not conforms(True, {"type": "integer"}, {})  # a bool is not an integer, as in jsonschema


def test_constructing_dbos_with_a_valid_configuration_does_not_import_jsonschema(tmp_path: Any) -> None:
    code = (
        "import sys\n"
        "from dbos import DBOS\n"
        f"DBOS(config={{'name': 'quick-app', 'system_database_url': 'sqlite:///{tmp_path}/q.sqlite'}})\n"
        "print('jsonschema' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"
