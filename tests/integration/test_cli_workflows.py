"""``dbos workflow ...`` and ``dbos queue list``, run as real processes.

Workflows are made in-process with the library (the ``dbos`` fixture), then
the command line reads or changes them through the same system database.
Hand-offs go through events and handles; waits only end late when a test is
already failing.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any, Dict, List

import pytest

from dbos import DBOS, SetWorkflowID, WorkflowStatus
from dbos.error import DBOSAwaitedWorkflowCancelledError
from dbos._sysdb import SystemDatabase, latest_version
from dbos._sysdb.migrator import load_migrations

from ..probe import database_exists, migration_version
from .test_cli import UNREACHABLE, assert_clean_failure, run_dbos

WAIT_S = 30.0
POLL_S = 0.05
# Workflows are recorded under their qualified names.
GREET = "greetings.<locals>.greet"
FAIL = "greetings.<locals>.fail"
PIPELINE = "three_steps.<locals>.pipeline"


# ----------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------


def cli(url: str, tmp_path: Path, *args: str) -> CompletedProcess[str]:
    return run_dbos(*args, "-s", url, cwd=tmp_path)


def ok(url: str, tmp_path: Path, *args: str) -> str:
    """Standard output of a command that must succeed."""
    result = cli(url, tmp_path, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def as_json(url: str, tmp_path: Path, *args: str) -> Any:
    return json.loads(ok(url, tmp_path, *args, "--json"))


def listed(url: str, tmp_path: Path, *args: str) -> List[str]:
    """IDs ``dbos workflow list ARGS --json`` shows, in its order."""
    return [s["workflow_id"] for s in as_json(url, tmp_path, "workflow", "list", *args)]


def greetings(ids: List[str]) -> None:
    """Workflows ``greet`` (one per ID) and a failing ``fail`` with ID ``bad-1``."""

    @DBOS.workflow()
    def greet(name: str) -> str:
        return f"hi {name}"

    @DBOS.workflow()
    def fail() -> None:
        raise ValueError("boom")

    for workflow_id in ids:
        with SetWorkflowID(workflow_id):
            greet(workflow_id)
    with SetWorkflowID("bad-1"):
        with pytest.raises(ValueError):
            fail()


def status_of(workflow_id: str) -> WorkflowStatus:
    status = DBOS.get_workflow_status(workflow_id)
    assert status is not None, workflow_id
    return status


def result_of(workflow_id: str) -> Any:
    return DBOS.retrieve_workflow(workflow_id).get_result(polling_interval_sec=POLL_S)


# ----------------------------------------------------------------------
# dbos workflow list
# ----------------------------------------------------------------------


def test_list_shows_an_aligned_table(dbos: Any, sys_db_url: str, tmp_path: Path) -> None:
    greetings(["a-1", "a-2"])
    lines = ok(sys_db_url, tmp_path, "workflow", "list").splitlines()
    assert lines[0].split() == ["ID", "STATUS", "NAME", "QUEUE", "CREATED", "UPDATED"]
    rows = [line.split() for line in lines[1:]]
    assert [row[:4] for row in rows] == [
        ["a-1", "SUCCESS", GREET, "-"], ["a-2", "SUCCESS", GREET, "-"], ["bad-1", "ERROR", FAIL, "-"],
    ]
    for column in ("STATUS", "CREATED"):
        start = lines[0].index(column)
        assert all(line[start - 2:start] == "  " and line[start] != " " for line in lines)
    created = status_of("a-1").created_at
    assert created is not None
    assert rows[0][4] == datetime.fromtimestamp(created / 1000).isoformat(timespec="seconds")


def test_list_json_has_statuses_without_values(dbos: Any, sys_db_url: str, tmp_path: Path) -> None:
    greetings(["a-1"])
    statuses = as_json(sys_db_url, tmp_path, "workflow", "list")
    assert [(s["workflow_id"], s["status"], s["name"]) for s in statuses] == [
        ("a-1", "SUCCESS", GREET), ("bad-1", "ERROR", FAIL),
    ]
    assert statuses[0]["application_name"] == "test-app"
    assert isinstance(statuses[0]["created_at"], int)
    assert not {"input", "output", "error"} & set(statuses[0])


def test_list_prints_no_warnings(dbos: Any, sys_db_url: str, tmp_path: Path) -> None:
    greetings(["a-1"])
    assert cli(sys_db_url, tmp_path, "workflow", "list").stderr == ""


def test_list_filters(dbos: Any, sys_db_url: str, tmp_path: Path) -> None:
    greetings(["a-1", "a-2", "b-1"])
    url = sys_db_url
    assert listed(url, tmp_path, "-S", "ERROR") == ["bad-1"]
    assert listed(url, tmp_path, "--status", "success") == ["a-1", "a-2", "b-1"]
    assert listed(url, tmp_path, "-n", GREET, "-p", "a-") == ["a-1", "a-2"]
    assert listed(url, tmp_path, "-l", "2") == ["a-1", "a-2"]
    newest = as_json(url, tmp_path, "workflow", "list", "-l", "2", "-o", "1", "-d")
    library = DBOS.list_workflows(sort_desc=True, limit=2, offset=1)
    assert [s["workflow_id"] for s in newest] == [s.workflow_id for s in library]
    assert newest[0]["created_at"] >= newest[1]["created_at"]
    assert listed(url, tmp_path, "-a", "test-app", "-q", "no-such-queue") == []
    assert listed(url, tmp_path, "--application-name", "another-app") == []
    assert listed(url, tmp_path, "-t", "2999-01-01T00:00:00") == []
    assert listed(url, tmp_path, "-t", "2000-01-01", "-e", "2999-01-01") == ["a-1", "a-2", "b-1", "bad-1"]


def test_list_default_limit_is_ten(dbos: Any, sys_db_url: str, tmp_path: Path) -> None:
    greetings([f"w-{i:02}" for i in range(11)])
    assert listed(sys_db_url, tmp_path) == [f"w-{i:02}" for i in range(10)]


def test_filter_values_are_only_values(dbos: Any, sys_db_url: str, tmp_path: Path) -> None:
    greetings(["a-1", "a%b", "a_c"])
    url = sys_db_url
    assert listed(url, tmp_path, "-n", "x' OR '1'='1") == []
    assert listed(url, tmp_path, "-n", 'greet"; DROP TABLE workflow_status; --') == []
    assert listed(url, tmp_path, "-p", "a%") == ["a%b"]
    assert listed(url, tmp_path, "-p", "a_") == ["a_c"]
    assert listed(url, tmp_path, "-p", "%") == []
    assert listed(url, tmp_path, "-u", "' OR 1=1 --") == []
    assert listed(url, tmp_path, "-n", GREET) == ["a-1", "a%b", "a_c"]


@pytest.mark.parametrize(
    "option, expected",
    [(["-S", "DONE"], "Unknown workflow status 'DONE'"), (["-t", "yesterday"], "ISO-8601")],
)
def test_invalid_filter_is_one_line(
    dbos: Any, sys_db_url: str, tmp_path: Path, option: List[str], expected: str
) -> None:
    line = assert_clean_failure(cli(sys_db_url, tmp_path, "workflow", "list", *option))
    assert line.startswith("dbos workflow list: ") and expected in line


# ----------------------------------------------------------------------
# dbos workflow get / steps
# ----------------------------------------------------------------------


def test_get_shows_status_inputs_and_output(dbos: Any, sys_db_url: str, tmp_path: Path) -> None:
    greetings(["a-1"])
    block = ok(sys_db_url, tmp_path, "workflow", "get", "a-1")
    fields = dict(line.split(": ", 1) for line in block.splitlines())
    assert fields["workflow_id"].strip() == "a-1"
    assert fields["status"].strip() == "SUCCESS"
    assert fields["output"].strip() == "'hi a-1'"
    assert fields["input"].strip() == "{'args': ('a-1',), 'kwargs': {}}"

    status = as_json(sys_db_url, tmp_path, "workflow", "get", "a-1")
    assert status["input"] == {"args": ["a-1"], "kwargs": {}}
    assert status["output"] == "hi a-1" and status["error"] is None
    failed = as_json(sys_db_url, tmp_path, "workflow", "get", "bad-1")
    assert failed["status"] == "ERROR" and failed["error"] == "ValueError: boom"


def test_steps_lists_ids_names_outputs_and_children(
    dbos: Any, sys_db_url: str, tmp_path: Path
) -> None:
    @DBOS.step()
    def double(x: int) -> int:
        return 2 * x

    @DBOS.step()
    def refuse() -> None:
        raise KeyError("nope")

    @DBOS.workflow()
    def child() -> str:
        return "child done"

    @DBOS.workflow()
    def parent() -> int:
        with SetWorkflowID("kid"):
            DBOS.start_workflow(child).get_result()
        try:
            refuse()
        except KeyError:
            pass
        return double(21)

    with SetWorkflowID("parent"):
        assert parent() == 42
    steps = as_json(sys_db_url, tmp_path, "workflow", "steps", "parent")
    # Steps are recorded under qualified names: "test_....<locals>.double".
    by_name = {s["function_name"].rsplit(".", 1)[-1]: s for s in steps}
    assert [s["function_id"] for s in steps] == list(range(1, len(steps) + 1))
    assert by_name["double"]["output"] == 42
    assert by_name["refuse"]["error"] == "KeyError: 'nope'"
    assert any(s["child_workflow_id"] == "kid" for s in steps)

    lines = ok(sys_db_url, tmp_path, "workflow", "steps", "parent").splitlines()
    assert lines[0].split() == ["ID", "NAME", "OUTPUT", "CHILD", "STARTED", "COMPLETED"]
    rows = {line.split()[1].rsplit(".", 1)[-1]: line.split() for line in lines[1:]}
    assert rows["double"][0] == str(by_name["double"]["function_id"]) and rows["double"][2] == "42"
    assert " ".join(rows["refuse"][2:4]) == "error: KeyError('nope')"


@pytest.mark.parametrize(
    "command",
    [
        ["workflow", "get"], ["workflow", "steps"], ["workflow", "cancel"], ["workflow", "resume"],
        ["workflow", "restart"], ["workflow", "fork", "-S", "2"],
    ],
    ids=lambda c: c[1],
)
def test_unknown_workflow_is_one_line(
    dbos: Any, sys_db_url: str, tmp_path: Path, command: List[str]
) -> None:
    line = assert_clean_failure(cli(sys_db_url, tmp_path, *command, "no-such-wf"))
    assert line.startswith(f"dbos {' '.join(command[:2])}: ")
    assert "no-such-wf" in line and "does not exist" in line
    assert listed(sys_db_url, tmp_path) == []


# ----------------------------------------------------------------------
# dbos workflow cancel / resume
# ----------------------------------------------------------------------


def test_cancel_then_resume_a_workflow_waiting_for_a_message(
    dbos: Any, sys_db_url: str, tmp_path: Path
) -> None:
    left = threading.Event()

    @DBOS.workflow()
    def waiter() -> str:
        try:
            DBOS.set_event("ready", True)
            return f"got {DBOS.recv('go', timeout_seconds=120)}"
        finally:
            left.set()

    with SetWorkflowID("waiter"):
        handle = DBOS.start_workflow(waiter)
    assert DBOS.get_event("waiter", "ready", timeout_seconds=WAIT_S) is True

    assert ok(sys_db_url, tmp_path, "workflow", "cancel", "waiter").strip() == "Cancelled workflow waiter"
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result(polling_interval_sec=POLL_S)
    assert left.wait(WAIT_S), "the cancelled workflow never left its recv"
    left.clear()

    resumed = as_json(sys_db_url, tmp_path, "workflow", "resume", "waiter")
    assert resumed["workflow_id"] == "waiter" and resumed["status"] in ("ENQUEUED", "PENDING")
    DBOS.send("waiter", "hello", "go")
    assert result_of("waiter") == "got hello"


def test_cancel_and_resume_of_a_finished_workflow_change_nothing(
    dbos: Any, sys_db_url: str, tmp_path: Path
) -> None:
    greetings(["a-1"])
    cancel = ok(sys_db_url, tmp_path, "workflow", "cancel", "a-1")
    assert "already finished with status SUCCESS" in cancel
    resume = ok(sys_db_url, tmp_path, "workflow", "resume", "bad-1")
    assert "already finished with status ERROR" in resume
    assert status_of("a-1").status == "SUCCESS"
    assert status_of("bad-1").status == "ERROR"


# ----------------------------------------------------------------------
# dbos workflow fork / restart
# ----------------------------------------------------------------------


def three_steps(calls: List[str]) -> Any:
    @DBOS.step()
    def one() -> int:
        calls.append("one")
        return 1

    @DBOS.step()
    def two(x: int) -> int:
        calls.append("two")
        return x + 10

    @DBOS.step()
    def three(x: int) -> int:
        calls.append("three")
        return x + 100

    @DBOS.workflow()
    def pipeline() -> int:
        return three(two(one()))

    with SetWorkflowID("pipeline"):
        assert pipeline() == 111
    return pipeline


def test_fork_reruns_only_the_steps_from_the_one_given(
    dbos: Any, sys_db_url: str, tmp_path: Path
) -> None:
    calls: List[str] = []
    three_steps(calls)
    forked = ok(sys_db_url, tmp_path, "workflow", "fork", "pipeline", "-S", "3", "-f", "forked-3")
    assert forked.strip() == "Forked workflow pipeline from step 3 as workflow forked-3"
    assert result_of("forked-3") == 111
    assert calls == ["one", "two", "three", "three"]

    status = as_json(sys_db_url, tmp_path, "workflow", "fork", "pipeline", "--step", "2")
    assert status["forked_from"] == "pipeline" and status["workflow_id"] != "pipeline"
    assert result_of(status["workflow_id"]) == 111
    assert calls == ["one", "two", "three", "three", "two", "three"]


def test_restart_runs_every_step_again(dbos: Any, sys_db_url: str, tmp_path: Path) -> None:
    calls: List[str] = []
    three_steps(calls)
    line = ok(sys_db_url, tmp_path, "workflow", "restart", "pipeline").strip()
    prefix = "Restarted workflow pipeline as workflow "
    assert line.startswith(prefix)
    new_id = line[len(prefix):]
    assert new_id != "pipeline"
    assert result_of(new_id) == 111
    assert calls == ["one", "two", "three"] * 2
    assert status_of(new_id).forked_from == "pipeline"


# ----------------------------------------------------------------------
# dbos queue list
# ----------------------------------------------------------------------


def test_queue_list_shows_only_queued_workflows(dbos: Any, sys_db_url: str, tmp_path: Path) -> None:
    calls: List[str] = []
    three_steps(calls)
    # No process runs this version, so the fork stays ENQUEUED.
    ok(sys_db_url, tmp_path, "workflow", "fork", "pipeline", "-f", "parked", "-v", "elsewhere")

    queued = as_json(sys_db_url, tmp_path, "queue", "list")
    assert [(s["workflow_id"], s["status"], s["app_version"]) for s in queued] == [
        ("parked", "ENQUEUED", "elsewhere")
    ]
    alias = as_json(sys_db_url, tmp_path, "workflow", "queue", "list", "-q", "_dbos_internal_queue")
    assert [s["workflow_id"] for s in alias] == ["parked"]
    assert as_json(sys_db_url, tmp_path, "queue", "list", "-q", "other") == []
    lines = ok(sys_db_url, tmp_path, "queue", "list", "-n", PIPELINE).splitlines()
    assert [line.split()[:4] for line in lines[1:]] == [
        ["parked", "ENQUEUED", PIPELINE, "_dbos_internal_queue"]
    ]
    assert calls == ["one", "two", "three"]


# ----------------------------------------------------------------------
# Databases the commands cannot use
# ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["workflow", "list"], ["workflow", "get", "x"], ["queue", "list"], ["workflow", "cancel", "x"]],
    ids=lambda c: "-".join(c[:2]),
)
def test_unreachable_database(command: List[str], tmp_path: Path) -> None:
    result = cli(UNREACHABLE, tmp_path, *command)
    line = assert_clean_failure(result)
    assert line.startswith(f"dbos {' '.join(command[:2])}: ")
    assert "Connection refused" in line
    assert "postgresql://postgres:***@127.0.0.1:1/unreachable_db" in line
    assert "hunter2" not in result.stdout + result.stderr


@pytest.mark.parametrize("command", [["workflow", "list"], ["workflow", "fork", "x"]])
def test_missing_database_is_not_created(
    command: List[str], sys_db_url: str, tmp_path: Path
) -> None:
    line = assert_clean_failure(cli(sys_db_url, tmp_path, *command))
    assert "does not exist" in line and "dbos migrate" in line
    assert not database_exists(sys_db_url)


def test_database_behind_the_code_is_not_migrated(sys_db_url: str, tmp_path: Path) -> None:
    sysdb = SystemDatabase(sys_db_url, pool_size=1)
    try:
        sysdb.migrate(load_migrations()[:1])
    finally:
        sysdb.close()
    line = assert_clean_failure(cli(sys_db_url, tmp_path, "queue", "list"))
    assert f"schema version 1, but this DBOS needs version {latest_version()}" in line
    assert "dbos migrate" in line
    assert migration_version(sys_db_url, "dbos") == 1


# ----------------------------------------------------------------------
# Help
# ----------------------------------------------------------------------


def test_help_lists_the_actions_and_options(tmp_path: Path) -> None:
    top = run_dbos("workflow", "--help", cwd=tmp_path)
    assert top.returncode == 0, top.stderr
    for action in ("list", "get", "steps", "cancel", "resume", "restart", "fork", "queue"):
        assert action in top.stdout
    fork = run_dbos("workflow", "fork", "--help", cwd=tmp_path)
    options: Dict[str, str] = {"--step": "-S", "--forked-workflow-id": "-f",
                               "--application-version": "-v", "--queue-name": "-q"}
    for long, short in options.items():
        assert f"{short} " in fork.stdout and long in fork.stdout
    assert "--sys-db-url" in fork.stdout
