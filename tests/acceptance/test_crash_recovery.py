"""Crash recovery with real processes killed by SIGKILL, on the chosen backend."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import IO, Any, List, Tuple

import pytest

from dbos import DefaultSerializer

from ..probe import qualified, query

pytestmark = pytest.mark.acceptance

APP = str(Path(__file__).with_name("crash_app.py"))
DS_APP = str(Path(__file__).with_name("ds_crash_app.py"))
STEPS = 5
DATASOURCE_KINDS = ["sqlalchemy", "async_sqlalchemy", "peewee", "dbapi", "django"]


def start(*args: str, app: str = APP) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, app, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def read_until(stream: "IO[str]", prefix: str) -> str:
    """The first line starting with ``prefix`` (blocks on the child's output)."""
    for line in stream:
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"the child ended without printing {prefix!r}")


def finish(proc: "subprocess.Popen[str]") -> List[str]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out.splitlines()


@pytest.mark.parametrize("kill_in_step", [1, 3, STEPS])
def test_workflow_killed_in_a_step_resumes_and_completed_steps_never_rerun(
    sys_db_url: str, tmp_path: Path, kill_in_step: int
) -> None:
    counts = tmp_path / "counts.txt"
    workflow_id = f"wf-{uuid.uuid4().hex[:8]}"
    first = start("steps", sys_db_url, str(counts), workflow_id, str(kill_in_step))
    assert first.stdout is not None
    assert read_until(first.stdout, "IN_STEP") == f"IN_STEP {kill_in_step}"
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)

    lines = finish(start("steps", sys_db_url, str(counts), workflow_id, "0"))
    assert f"RESULT {sum(n * n for n in range(1, STEPS + 1))}" in lines
    runs = Counter(int(line) for line in counts.read_text().split())
    # Steps completed before the kill ran once; the interrupted one ran again.
    assert {n: runs[n] for n in range(1, kill_in_step)} == {n: 1 for n in range(1, kill_in_step)}
    assert runs[kill_in_step] == 2
    assert all(runs[n] == 1 for n in range(kill_in_step + 1, STEPS + 1))


@pytest.mark.parametrize("kind", ["peewee", "dbapi", "sqlalchemy"])
def test_transaction_killed_between_commit_and_checkpoint_applies_once(
    sys_db_url: str, empty_db_url: str, kind: str
) -> None:
    workflow_id = f"txn-{uuid.uuid4().hex[:8]}"
    first = start("txn", sys_db_url, empty_db_url, workflow_id, "1", kind)
    assert first.stdout is not None
    assert read_until(first.stdout, "COMMITTED") == "COMMITTED"
    first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    # Killed after the commit: the effect and its recorded output are there, the checkpoint is not.
    assert query(empty_db_url, "SELECT value FROM counter") == [(1,)]
    assert recorded_outputs(empty_db_url, workflow_id) == [(1, "bump")]

    lines = finish(start("txn", sys_db_url, empty_db_url, workflow_id, "0", kind))
    assert "RESULT 1" in lines
    assert "COUNTER 1" in lines
    # The replay took the output from transaction_outputs rather than bump again.
    assert query(empty_db_url, "SELECT value FROM counter") == [(1,)]
    assert recorded_outputs(empty_db_url, workflow_id) == [(1, "bump")]


def recorded_outputs(app_url: str, workflow_id: str) -> List[Tuple[int, str]]:
    return [(int(r[0]), str(r[1])) for r in query(
        app_url,
        f"SELECT function_id, function_name FROM {qualified(app_url, 'transaction_outputs')} "
        "WHERE workflow_uuid = %s",
        (workflow_id,),
    )]


@pytest.mark.parametrize("kind", DATASOURCE_KINDS)
def test_datasource_transaction_killed_between_commit_and_checkpoint_applies_once(
    sys_db_url: str, empty_db_url: str, tmp_path: Path, kind: str
) -> None:
    workflow_id = f"ds-{uuid.uuid4().hex[:8]}"
    runs = tmp_path / "runs.txt"
    args = (sys_db_url, empty_db_url, workflow_id)
    first = start(*args, "1", kind, str(runs), app=DS_APP)
    assert first.stdout is not None
    assert read_until(first.stdout, "COMMITTED") == "COMMITTED"
    _, err = first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL, err
    # Killed after the commit: the effect and its recorded output are there, the checkpoint is not.
    assert query(empty_db_url, "SELECT value FROM counter") == [(1,)]
    assert datasource_outputs(empty_db_url, workflow_id) == [(1, 1, None)]
    assert checkpoints(sys_db_url, workflow_id) == []
    assert runs.read_text().splitlines() == ["ran"]

    lines = finish(start(*args, "0", kind, str(runs), app=DS_APP))
    # The replay returned the recorded output without running the function again.
    assert "RESULT 1" in lines and "COUNTER 1" in lines, lines
    assert runs.read_text().splitlines() == ["ran"]
    assert query(empty_db_url, "SELECT value FROM counter") == [(1,)]
    assert datasource_outputs(empty_db_url, workflow_id) == [(1, 1, None)]
    assert json.loads(read_line(lines, "STEPS ")) == [[1, "bump", 1]]
    assert checkpoints(sys_db_url, workflow_id) == [(1, "bump")]


def datasource_outputs(app_url: str, workflow_id: str) -> List[Tuple[int, Any, Any]]:
    """(step_id, output deserialized, error) of the workflow's rows in ``datasource_outputs``."""
    rows = query(app_url, f"SELECT step_id, output, error FROM {qualified(app_url, 'datasource_outputs')} "
                 "WHERE workflow_id = %s", (workflow_id,))
    return [(int(r[0]), DefaultSerializer().deserialize(r[1]), r[2]) for r in rows]


def checkpoints(sys_url: str, workflow_id: str) -> List[Tuple[int, str]]:
    rows = query(sys_url, f"SELECT function_id, function_name FROM {qualified(sys_url, 'operation_outputs')} "
                 "WHERE workflow_uuid = %s ORDER BY function_id", (workflow_id,))
    return [(int(r[0]), str(r[1])) for r in rows]


def read_line(lines: List[str], prefix: str) -> str:
    found = [line[len(prefix):] for line in lines if line.startswith(prefix)]
    assert len(found) == 1, lines
    return found[0]
