"""``dbos workflow ...`` and ``dbos queue list``, run as real processes.

Workflows are made in-process with the library (the ``dbos`` fixture), then
the installed ``dbos`` script reads or changes them through the same system
database. Its JSON is DBOS Transact's: one line, the same fields in the
same order, so scripts written for DBOS Transact's CLI parse it.
Hand-offs go through events and handles; waits only end late when a test is
already failing.
"""

from __future__ import annotations

import json
import threading
import unicodedata
from datetime import datetime
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any, Dict, List, Set

import pytest

from dbos import DBOS, SetWorkflowID, WorkflowStatus
from dbos._ops import cli_output as out
from dbos._sysdb import SystemDatabase, latest_version
from dbos._sysdb.migrator import load_migrations
from dbos.error import DBOSAwaitedWorkflowCancelledError

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
    """The JSON a command prints by default, checked to be a single line."""
    text = ok(url, tmp_path, *args)
    assert text.endswith("\n") and text.count("\n") == 1, text
    return json.loads(text)


def table(url: str, tmp_path: Path, *args: str) -> List[str]:
    return ok(url, tmp_path, *args, "--table").splitlines()


def listed(url: str, tmp_path: Path, *args: str) -> List[str]:
    """IDs ``dbos workflow list ARGS`` shows, in its order."""
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


def test_list_table_is_aligned(dbos: Any, sys_db_url: str, tmp_path: Path) -> None:
    greetings(["a-1", "a-2"])
    lines = table(sys_db_url, tmp_path, "workflow", "list")
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


# DBOS Transact 2.31.1's `dbos workflow list` / `get`: every key, in its order.
TRANSACT_KEYS = [
    "workflow_id", "status", "name", "recovery_attempts", "config_name", "class_name",
    "authenticated_user", "authenticated_roles", "assumed_role", "queue_name", "executor_id",
    "created_at", "updated_at", "app_version", "app_id", "workflow_deadline_epoch_ms",
    "workflow_timeout_ms", "deduplication_id", "priority", "queue_partition_key", "forked_from",
    "parent_workflow_id", "dequeued_at", "delay_until_epoch_ms", "was_forked_from", "completed_at",
    "attributes", "schedule_name", "application_name", "input", "output", "error",
]
STEP_KEYS = ["function_id", "function_name", "output", "error", "child_workflow_id",
             "started_at_epoch_ms", "completed_at_epoch_ms"]


def test_list_json_is_dbos_transacts(dbos: Any, sys_db_url: str, tmp_path: Path) -> None:
    greetings(["a-1"])
    statuses = as_json(sys_db_url, tmp_path, "workflow", "list")
    assert [(s["workflow_id"], s["status"], s["name"]) for s in statuses] == [
        ("a-1", "SUCCESS", GREET), ("bad-1", "ERROR", FAIL),
    ]
    for status in statuses:
        assert list(status) == TRANSACT_KEYS
    good, bad = statuses
    assert good["input"] == {"args": ["a-1"], "kwargs": {}}
    assert (good["output"], good["error"]) == ("hi a-1", None)
    # The error as DBOS Transact prints it: str() of the exception.
    assert (bad["output"], bad["error"]) == (None, "boom")
    assert good["application_name"] == "test-app" and good["executor_id"] == "local"
    assert good["app_id"] == ""  # DBOS__APPID unset, recorded as DBOS Transact records it
    assert good["was_forked_from"] is False and good["priority"] == 0
    assert good["queue_name"] is None and good["parent_workflow_id"] is None
    for key in ("created_at", "updated_at", "completed_at", "recovery_attempts"):
        assert isinstance(good[key], int) and not isinstance(good[key], bool), key


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


def test_queue_list_has_no_default_limit(dbos: Any, sys_db_url: str, tmp_path: Path) -> None:
    calls: List[str] = []
    three_steps(calls)
    # No process runs this version, so the forks stay ENQUEUED.
    for i in range(11):
        DBOS.fork_workflow("pipeline", 1, application_version="elsewhere")
    assert len(as_json(sys_db_url, tmp_path, "queue", "list")) == 11
    assert len(as_json(sys_db_url, tmp_path, "workflow", "queue", "list", "-l", "3")) == 3
    assert len(as_json(sys_db_url, tmp_path, "workflow", "list", "-S", "ENQUEUED")) == 10


# Each hides something a terminal would act on: a line break, escape
# sequences (colour, clear screen, a window title), a bidi override.
HOSTILE_ID = "evil\nFORGED  SUCCESS  x\x1b[31m\x1b[2J\x1b]0;title\x07\u202e"


def test_table_escapes_control_characters(dbos: Any, sys_db_url: str, tmp_path: Path) -> None:
    greetings([HOSTILE_ID, "a-1"])
    for command in (["workflow", "list"], ["workflow", "get", HOSTILE_ID]):
        text = ok(sys_db_url, tmp_path, *command, "--table")
        assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in text.replace("\n", ""))
        assert "evil\\nFORGED  SUCCESS" in text
        assert not any(line.startswith("FORGED") for line in text.splitlines())
    block = ok(sys_db_url, tmp_path, "workflow", "get", HOSTILE_ID, "--table")
    assert "x\\x1b[31m\\x1b[2J\\x1b]0;title\\x07\\u202e" in block
    lines = table(sys_db_url, tmp_path, "workflow", "list")
    assert len(lines) == 1 + 3  # the header and three workflows, however their IDs read
    assert [line.split()[0][:4] for line in lines[1:]] == ["evil", "a-1", "bad-"]
    # JSON escapes by its own rules, and gives the ID back exactly.
    assert [s["workflow_id"] for s in as_json(sys_db_url, tmp_path, "workflow", "list")][0] == HOSTILE_ID


def test_error_lines_escape_control_characters(dbos: Any, sys_db_url: str, tmp_path: Path) -> None:
    result = cli(sys_db_url, tmp_path, "workflow", "get", "missing\x1b[2J-id")
    line = assert_clean_failure(result)
    assert "missing\\x1b[2J-id does not exist" in line
    assert "\x1b" not in result.stderr


def test_table_caps_column_width(dbos: Any, sys_db_url: str, tmp_path: Path) -> None:
    long_id = "order-" + "x" * 200 + "-end"
    greetings([long_id])
    lines = table(sys_db_url, tmp_path, "workflow", "list")
    first = lines[1].split()[0]
    assert len(first) == out.MAX_CELL
    assert first.startswith("order-x") and first.endswith("x-end") and "..." in first
    assert all(len(line) < 2 * out.MAX_CELL + 60 for line in lines)
    assert as_json(sys_db_url, tmp_path, "workflow", "get", long_id)["workflow_id"] == long_id


def test_json_prints_what_json_cannot_hold_as_text(dbos: Any, sys_db_url: str, tmp_path: Path) -> None:
    moment = datetime(2030, 1, 2, 3, 4, 5)

    @DBOS.workflow()
    def odd(tags: Set[str]) -> Dict[str, Any]:
        return {"when": moment, "pair": (1, 2), 7: "seven"}

    with SetWorkflowID("odd"):
        odd({"x"})
    status = as_json(sys_db_url, tmp_path, "workflow", "get", "odd")
    # As DBOS Transact prints them: str() of the value, tuples as lists, keys as text.
    assert status["output"] == {"when": str(moment), "pair": [1, 2], "7": "seven"}
    assert status["input"] == {"args": ["{'x'}"], "kwargs": {}}


# ----------------------------------------------------------------------
# dbos workflow get / steps
# ----------------------------------------------------------------------


def test_get_shows_status_inputs_and_output(dbos: Any, sys_db_url: str, tmp_path: Path) -> None:
    greetings(["a-1"])
    block = ok(sys_db_url, tmp_path, "workflow", "get", "a-1", "--table")
    fields = dict(line.split(": ", 1) for line in block.splitlines())
    assert fields["workflow_id"].strip() == "a-1"
    assert fields["status"].strip() == "SUCCESS"
    assert fields["output"].strip() == "'hi a-1'"
    assert fields["input"].strip() == "{'args': ('a-1',), 'kwargs': {}}"

    status = as_json(sys_db_url, tmp_path, "workflow", "get", "a-1")
    assert list(status) == TRANSACT_KEYS
    assert status["input"] == {"args": ["a-1"], "kwargs": {}}
    assert status["output"] == "hi a-1" and status["error"] is None
    failed = as_json(sys_db_url, tmp_path, "workflow", "get", "bad-1")
    assert failed["status"] == "ERROR" and failed["error"] == "boom"
    # --json, from before JSON became the default, still prints the same.
    assert json.loads(ok(sys_db_url, tmp_path, "workflow", "get", "a-1", "--json")) == status


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
    assert all(list(s) == STEP_KEYS for s in steps)
    assert [s["function_id"] for s in steps] == list(range(1, len(steps) + 1))
    assert by_name["double"]["output"] == 42
    assert by_name["refuse"]["error"] == "'nope'"  # str(KeyError('nope')), as DBOS Transact prints it
    assert any(s["child_workflow_id"] == "kid" for s in steps)

    lines = table(sys_db_url, tmp_path, "workflow", "steps", "parent")
    assert lines[0].split() == ["ID", "NAME", "OUTPUT", "CHILD", "STARTED", "COMPLETED"]
    rows = {line.split()[1].rsplit(".", 1)[-1]: line.split() for line in lines[1:]}
    assert rows["double"][0] == str(by_name["double"]["function_id"]) and rows["double"][2] == "42"
    assert " ".join(rows["refuse"][2:4]) == "error: KeyError('nope')"


@pytest.mark.parametrize(
    "command",
    [
        ["workflow", "get"], ["workflow", "steps"], ["workflow", "cancel"], ["workflow", "resume"],
        ["workflow", "restart"], ["workflow", "fork", "-S", "2"], ["workflow", "delete"],
    ],
    ids=lambda c: c[1],
)
def test_unknown_workflow_is_one_line(
    dbos: Any, sys_db_url: str, tmp_path: Path, command: List[str]
) -> None:
    result = cli(sys_db_url, tmp_path, *command, "no-such-wf")
    line = assert_clean_failure(result)
    assert result.stdout == ""
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

    resumed = json.loads(ok(sys_db_url, tmp_path, "workflow", "resume", "waiter", "--json"))
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
    forked = as_json(sys_db_url, tmp_path, "workflow", "fork", "pipeline", "-S", "3", "-f", "forked-3")
    assert list(forked) == TRANSACT_KEYS
    assert (forked["workflow_id"], forked["forked_from"]) == ("forked-3", "pipeline")
    assert forked["status"] in ("ENQUEUED", "PENDING", "SUCCESS")
    assert result_of("forked-3") == 111
    assert calls == ["one", "two", "three", "three"]

    status = as_json(sys_db_url, tmp_path, "workflow", "fork", "pipeline", "--step", "2")
    assert status["forked_from"] == "pipeline" and status["workflow_id"] != "pipeline"
    assert result_of(status["workflow_id"]) == 111
    assert calls == ["one", "two", "three", "three", "two", "three"]


def test_restart_runs_every_step_again(dbos: Any, sys_db_url: str, tmp_path: Path) -> None:
    calls: List[str] = []
    three_steps(calls)
    restarted = as_json(sys_db_url, tmp_path, "workflow", "restart", "pipeline")
    new_id = restarted["workflow_id"]
    assert new_id != "pipeline" and restarted["forked_from"] == "pipeline"
    assert result_of(new_id) == 111
    assert calls == ["one", "two", "three"] * 2
    assert status_of(new_id).forked_from == "pipeline"


# ----------------------------------------------------------------------
# dbos workflow delete
# ----------------------------------------------------------------------


def parent_and_child() -> None:
    @DBOS.workflow()
    def kid() -> str:
        return "kid"

    @DBOS.workflow()
    def parent() -> str:
        return str(kid())

    with SetWorkflowID("parent"):
        parent()


def test_delete_removes_the_workflow_and_with_children_its_children(
    dbos: Any, sys_db_url: str, tmp_path: Path
) -> None:
    parent_and_child()
    greetings(["a-1"])
    assert ok(sys_db_url, tmp_path, "workflow", "delete", "a-1") == "Deleted workflow a-1\n"
    assert DBOS.get_workflow_status("a-1") is None
    line = ok(sys_db_url, tmp_path, "workflow", "delete", "parent", "--delete-children")
    assert line == "Deleted workflow parent and 1 child workflow\n"
    assert listed(sys_db_url, tmp_path) == ["bad-1"]
    deleted = json.loads(ok(sys_db_url, tmp_path, "workflow", "delete", "bad-1", "--json"))
    assert deleted["workflow_id"] == "bad-1" and list(deleted) == TRANSACT_KEYS
    assert listed(sys_db_url, tmp_path) == []


# ----------------------------------------------------------------------
# dbos rename-application
# ----------------------------------------------------------------------


def test_rename_application_moves_the_rows_and_prints_the_counts(
    dbos: Any, sys_db_url: str, tmp_path: Path
) -> None:
    greetings(["a-1"])
    refused = run_dbos("rename-application", "-s", sys_db_url, "-f", "test-app", "-t", "new-app",
                       cwd=tmp_path, stdin="n\n")
    assert refused.returncode == 1 and "Rename cancelled." in refused.stdout
    assert listed(sys_db_url, tmp_path, "-a", "new-app") == []

    moved = json.loads(ok(sys_db_url, tmp_path, "rename-application", "--from", "test-app",
                          "--to", "new-app", "-y", "--batch-size", "1"))
    assert moved["workflows"] == 2 and set(moved) >= {"workflows", "steps", "queues", "schedules", "versions"}
    assert listed(sys_db_url, tmp_path, "-a", "new-app") == ["a-1", "bad-1"]
    assert listed(sys_db_url, tmp_path, "-a", "test-app") == []

    line = assert_clean_failure(cli(sys_db_url, tmp_path, "rename-application", "-t", "other-app", "-y"))
    assert "nothing to move" in line


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
    lines = table(sys_db_url, tmp_path, "queue", "list", "-n", PIPELINE)
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
    for action in ("list", "get", "steps", "cancel", "resume", "restart", "fork", "delete", "queue"):
        assert action in top.stdout
    fork = run_dbos("workflow", "fork", "--help", cwd=tmp_path)
    options: Dict[str, str] = {"--step": "-S", "--forked-workflow-id": "-f",
                               "--application-version": "-v", "--queue-name": "-q"}
    for long, short in options.items():
        assert f"{short} " in fork.stdout and long in fork.stdout
    assert "--sys-db-url" in fork.stdout
