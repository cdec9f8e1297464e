"""``make_pydantic_args_validator`` on its own, and the core without pydantic."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dbos import make_pydantic_args_validator
from dbos.error import DBOSArgumentValidationError


def test_make_pydantic_args_validator_on_a_plain_function() -> None:
    def plain(when: int, *rest: int, **named: bool) -> None: ...

    validate = make_pydantic_args_validator(plain)
    assert validate(("1", "2", 3), {"flag": "true"}) == ((1, 2, 3), {"flag": True})
    with pytest.raises(DBOSArgumentValidationError, match=r"argument 'rest\[1\]'"):
        validate((1, 2, "x"), {})
    with pytest.raises(DBOSArgumentValidationError, match="argument 'flag'"):
        validate((1,), {"flag": "perhaps"})


def test_the_core_imports_and_runs_without_pydantic() -> None:
    script = """
import sys
sys.modules["pydantic"] = None  # as if it were not installed
import dbos
from dbos import DBOS, pydantic_args_validator
from dbos.error import DBOSException
@DBOS.workflow(validate_args=lambda a, k: (a, k))
def fine() -> None: ...
try:
    @DBOS.workflow(validate_args=pydantic_args_validator)
    def typed(n: int) -> None: ...
except DBOSException as exc:
    print(exc)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pip install 'dbos[validation]'" in done.stdout
