"""A DBOS Transact program runs unchanged: dbos_transact_app.py, as real processes.

The program configures only ``application_database_url`` and writes through
``DBOS.sql_session.execute(sqlalchemy.text(...))``, so it relies on the
SQLAlchemy datasource being the default wherever SQLAlchemy is installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from ..probe import qualified, query

pytestmark = pytest.mark.acceptance

APP = str(Path(__file__).with_name("dbos_transact_app.py"))


def run_app(sys_db_url: str, empty_db_url: str, workflow_id: str, name: str, cwd: Path) -> List[str]:
    proc = subprocess.run(
        [sys.executable, APP, sys_db_url, empty_db_url, workflow_id, name],
        capture_output=True, text=True, timeout=120, cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]


def test_a_dbos_transact_program_runs_unchanged(sys_db_url: str, empty_db_url: str, tmp_path: Path) -> None:
    first = run_app(sys_db_url, empty_db_url, "greet-ada", "Ada", tmp_path)
    assert first == ["RESULT Hello, Ada! (greeted 1x, 1 in all, workflow greet-ada)"]
    assert query(empty_db_url, "SELECT name, note, greeted FROM greetings") == [("Ada", "Hello, Ada!", 1)]
    # Step 1 is compose_note; the two transactions recorded their outputs in the app database.
    outputs = query(
        empty_db_url,
        f"SELECT function_id, function_name, error FROM {qualified(empty_db_url, 'transaction_outputs')} "
        "WHERE workflow_uuid = %s ORDER BY function_id",
        ("greet-ada",),
    )
    assert outputs == [(2, "record_greeting", None), (3, "count_greetings", None)]
    status = query(sys_db_url, f"SELECT status FROM {qualified(sys_db_url, 'workflow_status')} "
                               "WHERE workflow_uuid = %s", ("greet-ada",))
    assert status == [("SUCCESS",)]

    # The same workflow ID again: its recorded result, nothing inserted twice
    # (a second INSERT of Ada would fail on the primary key).
    assert run_app(sys_db_url, empty_db_url, "greet-ada", "Ada", tmp_path) == first

    second = run_app(sys_db_url, empty_db_url, "greet-grace", "Grace", tmp_path)
    assert second == ["RESULT Hello, Grace! (greeted 1x, 2 in all, workflow greet-grace)"]
    assert query(empty_db_url, "SELECT name FROM greetings ORDER BY name") == [("Ada",), ("Grace",)]
