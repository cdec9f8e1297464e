"""The ``dbos`` command line, run as real processes against the chosen backend.

Tests run the installed ``dbos`` console script; some also run
``python -m dbos``, so both entry points are covered. What a command did is read
back over the test's own connections (sqlite3 or psycopg2).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence
from urllib.parse import urlsplit

import pytest

from dbos._sysdb import SystemDatabase, latest_version
from dbos._sysdb.migrator import load_migrations
from dbos._versions import package_version

from ..probe import (
    SYSTEM_TABLES,
    database_exists,
    database_name,
    execute,
    maintenance_url,
    migration_version,
    query,
    sqlite_path,
    table_names,
)

CONSOLE_SCRIPT = Path(sys.executable).with_name("dbos")
UNREACHABLE = "postgresql://postgres:hunter2@127.0.0.1:1/unreachable_db"


# ----------------------------------------------------------------------
# Running the command line
# ----------------------------------------------------------------------


def run_dbos(
    *args: str,
    cwd: Path,
    stdin: Optional[str] = None,
    script: bool = True,
    env: Optional[Dict[str, str]] = None,
) -> subprocess.CompletedProcess[str]:
    """``dbos ARGS`` in ``cwd``, as ``python -m dbos`` or the console script."""
    command = [str(CONSOLE_SCRIPT)] if script else [sys.executable, "-m", "dbos"]
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def assert_clean_failure(result: subprocess.CompletedProcess[str]) -> str:
    """Exit status 1 and one line on standard error, no traceback; that line."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def write_config(directory: Path, url: Optional[str], migrate: Sequence[str] = ()) -> Path:
    lines = ["name: cli-app"]
    if url is not None:
        lines.append(f"system_database_url: '{url}'")
    if migrate:
        lines.append("database:")
        lines.append("  migrate:")
        lines.extend(f"    - '{command}'" for command in migrate)
    path = directory / "dbos_config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def append_line(target: Path, text: str) -> str:
    """A shell command appending ``text`` to ``target``."""
    return f"echo {text} >> {shlex.quote(str(target))}"


# ----------------------------------------------------------------------
# Independent look at the database
# ----------------------------------------------------------------------












def assert_migrated(url: str, schema: str = "dbos") -> None:
    assert table_names(url, schema) >= SYSTEM_TABLES
    assert migration_version(url, schema) == latest_version()


@pytest.fixture
def postgres_only(backend: str) -> None:
    if backend != "postgres":
        pytest.skip("PostgreSQL schemas and roles do not exist on SQLite")


# ----------------------------------------------------------------------
# Help and version
# ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "command, options",
    [
        ("migrate", ["--sys-db-url", "--db-url", "--schema", "--config", "--app-role"]),
        ("reset", ["--sys-db-url", "--db-url", "--schema", "--config", "--yes"]),
    ],
)
@pytest.mark.parametrize("script", [False, True], ids=["module", "script"])
def test_help_describes_the_options(
    command: str, options: List[str], script: bool, tmp_path: Path
) -> None:
    result = run_dbos(command, "--help", cwd=tmp_path, script=script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: dbos {command}")
    for option in options:
        assert option in result.stdout
    assert "system database" in result.stdout


def test_version_option(tmp_path: Path) -> None:
    result = run_dbos("--version", cwd=tmp_path, script=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"DBOS CLI version: {package_version()}"


def test_version_command(tmp_path: Path) -> None:
    result = run_dbos("version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"DBOS CLI version: {package_version()}\n"


def assert_usage_error(result: subprocess.CompletedProcess[str]) -> str:
    """Exit status 2 and one line on standard error, nothing on standard output; that line."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    line = assert_usage_error(run_dbos(cwd=tmp_path))
    assert line == "dbos: the following arguments are required: COMMAND (see `dbos --help`)"


@pytest.mark.parametrize(
    "command, expected",
    [
        (["workflow", "list", "--bogus", "-x"],
         "dbos workflow list: unrecognized arguments: --bogus -x (see `dbos workflow list --help`)"),
        (["workflow", "list", "--limit", "ten"],
         "dbos workflow list: argument -l/--limit: invalid int value: 'ten' (see `dbos workflow list --help`)"),
        (["workflow", "frobnicate"], "dbos workflow: argument ACTION: invalid choice: 'frobnicate'"),
        (["workflow", "get"], "dbos workflow get: the following arguments are required: WORKFLOW_ID"),
        (["reset", "--yes", "--sys-db-url"], "dbos reset: argument -s/--sys-db-url: expected one argument"),
    ],
    ids=["unknown-option", "bad-value", "unknown-action", "missing-id", "missing-value"],
)
def test_usage_errors_are_one_line(command: List[str], expected: str, tmp_path: Path) -> None:
    assert assert_usage_error(run_dbos(*command, cwd=tmp_path)).startswith(expected)


# ----------------------------------------------------------------------
# dbos migrate
# ----------------------------------------------------------------------


@pytest.mark.parametrize("script", [False, True], ids=["module", "script"])
def test_migrate_creates_the_database_then_reports_it_up_to_date(
    sys_db_url: str, tmp_path: Path, script: bool
) -> None:
    assert not database_exists(sys_db_url)
    first = run_dbos("migrate", "-s", sys_db_url, cwd=tmp_path, script=script)
    assert first.returncode == 0, first.stderr
    assert f"to version {latest_version()}" in first.stdout
    assert_migrated(sys_db_url)

    second = run_dbos("migrate", "--sys-db-url", sys_db_url, cwd=tmp_path, script=script)
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout
    assert_migrated(sys_db_url)


def test_migrate_into_a_schema(postgres_only: None, sys_db_url: str, tmp_path: Path) -> None:
    result = run_dbos("migrate", "-s", sys_db_url, "--schema", "cli_schema", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_migrated(sys_db_url, "cli_schema")
    assert table_names(sys_db_url, "dbos") == set()


def test_migrate_creates_the_application_database(sys_db_url: str, empty_db_url: str, tmp_path: Path) -> None:
    assert not database_exists(empty_db_url)
    result = run_dbos("migrate", "-s", sys_db_url, "-D", empty_db_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_migrated(sys_db_url)
    # As DBOS Transact leaves it: there for the app's own migrations (alembic
    # connects, it creates nothing), with the table @DBOS.transaction records in.
    assert "transaction_outputs" in table_names(empty_db_url)


@pytest.fixture
def app_role(postgres_only: None, sys_db_url: str) -> Iterator[str]:
    """A PostgreSQL role that exists while the test runs."""
    role = f"dbos_test_role_{uuid.uuid4().hex[:8]}"
    server = urlsplit(sys_db_url)._replace(path="/postgres").geturl()
    query(server, f'CREATE ROLE "{role}"')
    yield role
    if database_exists(sys_db_url):
        query(sys_db_url, f'DROP OWNED BY "{role}"')
    query(server, f'DROP ROLE "{role}"')


def test_migrate_grants_the_app_role(app_role: str, sys_db_url: str, tmp_path: Path) -> None:
    result = run_dbos("migrate", "-s", sys_db_url, "--app-role", app_role, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    sql = "SELECT has_table_privilege(%s, 'dbos.workflow_status', 'INSERT')"
    assert query(sys_db_url, sql, (app_role,)) == [(True,)]


def test_migrate_uses_the_config_file_and_runs_its_commands_in_order(
    sys_db_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "commands.log"
    write_config(tmp_path, sys_db_url, [append_line(log, "first"), append_line(log, "second")])
    result = run_dbos("migrate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_migrated(sys_db_url)
    assert log.read_text().splitlines() == ["first", "second"]
    assert result.stdout.index("Migrated") < result.stdout.index("first")


def test_migrate_stops_at_the_first_failing_command(sys_db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "commands.log"
    failing = "exit 3"
    commands = [append_line(log, "one"), failing, append_line(log, "three")]
    write_config(tmp_path, sys_db_url, commands)
    result = run_dbos("migrate", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert log.read_text().splitlines() == ["one"]
    message = result.stderr.strip().splitlines()[-1]
    assert "failed" in message and message.endswith(failing)
    assert_migrated(sys_db_url)


def test_migrate_with_config_option_and_default_sqlite_url(tmp_path: Path) -> None:
    elsewhere = tmp_path / "conf"
    elsewhere.mkdir()
    config_file = write_config(elsewhere, None)
    result = run_dbos("migrate", "--config", str(config_file), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # With no URL in the file, the system database is <name>.sqlite here.
    assert_migrated(f"sqlite:///{tmp_path / 'cli_app.sqlite'}")


def test_migrate_option_overrides_the_config_file(sys_db_url: str, tmp_path: Path) -> None:
    write_config(tmp_path, f"sqlite:///{tmp_path / 'from_file.sqlite'}")
    result = run_dbos("migrate", "-s", sys_db_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert_migrated(sys_db_url)
    assert not (tmp_path / "from_file.sqlite").exists()


def run_psql(url: str, script: str) -> None:
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("psql is not installed")
    result = subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url],
                            input=script, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_printed_migrations_run_in_psql_make_a_current_database(
    postgres_only: None, sys_db_url: str, tmp_path: Path
) -> None:
    printed = run_dbos("migrate", "--print-migrations", "all", "--schema", "printed", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith("-- DBOS system database migrations\n")
    query(maintenance_url(sys_db_url), f'CREATE DATABASE "{database_name(sys_db_url)}"')
    run_psql(sys_db_url, printed.stdout)
    assert_migrated(sys_db_url, "printed")
    again = run_dbos("migrate", "-s", sys_db_url, "--schema", "printed", cwd=tmp_path)
    assert "up to date" in again.stdout, again.stderr


def test_printed_migrations_from_a_number_finish_a_database_behind(
    postgres_only: None, sys_db_url: str, tmp_path: Path
) -> None:
    sysdb = SystemDatabase(sys_db_url, pool_size=1)
    try:
        sysdb.migrate(load_migrations()[:2])
    finally:
        sysdb.close()
    printed = run_dbos("migrate", "-s", sys_db_url, "--print-migrations", "3", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert "-- Migration 2 " not in printed.stdout and "-- Migration 3 " in printed.stdout
    assert migration_version(sys_db_url) == 2  # printing touched nothing
    run_psql(sys_db_url, printed.stdout)
    assert_migrated(sys_db_url)


def test_printed_user_role_grants_access(app_role: str, sys_db_url: str, tmp_path: Path) -> None:
    assert run_dbos("migrate", "-s", sys_db_url, cwd=tmp_path).returncode == 0
    printed = run_dbos("migrate", "--print-user-role", "-r", app_role, cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    sql = "SELECT has_table_privilege(%s, 'dbos.workflow_status', 'INSERT')"
    assert query(sys_db_url, sql, (app_role,)) == [(False,)]
    run_psql(sys_db_url, printed.stdout)
    assert query(sys_db_url, sql, (app_role,)) == [(True,)]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--print-user-role"], "name it with --app-role ROLE"),
        (["--print-migrations", "99"], "'all' or a migration number from 1 to"),
        (["--print-migrations", "all", "-s", "sqlite:///x.sqlite"], "print PostgreSQL SQL"),
    ],
)
def test_print_options_refuse_what_they_cannot_print(args: List[str], expected: str, tmp_path: Path) -> None:
    line = assert_clean_failure(run_dbos("migrate", *args, cwd=tmp_path))
    assert expected in line
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------
# dbos reset
# ----------------------------------------------------------------------


@pytest.fixture
def migrated_url(sys_db_url: str, tmp_path: Path) -> str:
    result = run_dbos("migrate", "-s", sys_db_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return sys_db_url


@pytest.mark.parametrize("answer", ["n\n", "\n", None], ids=["no", "empty", "closed"])
def test_reset_without_yes_keeps_the_database_unless_confirmed(
    migrated_url: str, tmp_path: Path, answer: Optional[str]
) -> None:
    result = run_dbos("reset", "-s", migrated_url, cwd=tmp_path, stdin=answer)
    assert "[y/N]" in result.stdout
    assert "cancelled" in result.stdout.lower()
    assert database_exists(migrated_url)
    assert_migrated(migrated_url)


def test_reset_confirmed_at_the_prompt_deletes(migrated_url: str, tmp_path: Path) -> None:
    result = run_dbos("reset", "-s", migrated_url, cwd=tmp_path, stdin="y\n")
    assert result.returncode == 0, result.stderr
    assert not database_exists(migrated_url)


@pytest.mark.parametrize("script", [False, True], ids=["module", "script"])
def test_reset_yes_deletes_the_database(
    migrated_url: str, tmp_path: Path, script: bool
) -> None:
    result = run_dbos("reset", "-y", "-s", migrated_url, cwd=tmp_path, script=script)
    assert result.returncode == 0, result.stderr
    assert not database_exists(migrated_url)
    if sqlite_path(migrated_url) is not None:
        assert list(tmp_path.glob("system.sqlite*")) == []


def test_reset_with_a_url_does_not_read_the_config_file(migrated_url: str, tmp_path: Path) -> None:
    # A file for another environment: its variable is unset here, and its URL is not this one.
    (tmp_path / "dbos_config.yaml").write_text(
        "name: cli-app\nsystem_database_url: ${PRODUCTION_DATABASE_URL}\n")
    result = run_dbos("reset", "-y", "-s", migrated_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Deleted the system database at ")
    assert not database_exists(migrated_url)


def test_reset_of_a_missing_database_deletes_nothing(sys_db_url: str, tmp_path: Path) -> None:
    assert not database_exists(sys_db_url)
    result = run_dbos("reset", "-y", "-s", sys_db_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Deleted" not in result.stdout
    assert result.stdout.startswith("There is no system database at ") and "nothing to delete" in result.stdout
    assert not database_exists(sys_db_url)
    assert list(tmp_path.iterdir()) == []


def test_reset_uses_the_config_file(migrated_url: str, tmp_path: Path) -> None:
    write_config(tmp_path, migrated_url)
    result = run_dbos("reset", "--yes", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not database_exists(migrated_url)


# ----------------------------------------------------------------------
# Errors: exit status 1 and one clear line
# ----------------------------------------------------------------------


@pytest.mark.parametrize("command", [["migrate"], ["reset", "-y"]])
def test_missing_database_url(command: List[str], tmp_path: Path) -> None:
    line = assert_clean_failure(run_dbos(*command, cwd=tmp_path))
    assert "Missing database URL" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["migrate"], ["reset", "-y"]])
@pytest.mark.parametrize("script", [False, True], ids=["module", "script"])
def test_unreachable_database(command: List[str], script: bool, tmp_path: Path) -> None:
    result = run_dbos(*command, "-s", UNREACHABLE, cwd=tmp_path, script=script)
    line = assert_clean_failure(result)
    assert "hunter2" not in result.stdout + result.stderr
    assert "postgresql://postgres:***@127.0.0.1:1/unreachable_db" in line
    assert "Connection refused" in line


@pytest.mark.parametrize(
    "url, expected",
    [
        ("mysql://root:hunter2@localhost/app", "unsupported database URL"),
        ("postgresql://postgres:hunter2@localhost:5432/", "no database name"),
    ],
)
def test_unusable_url(url: str, expected: str, tmp_path: Path) -> None:
    result = run_dbos("migrate", "-s", url, cwd=tmp_path)
    line = assert_clean_failure(result)
    assert expected in line
    assert "hunter2" not in result.stderr


def test_invalid_config_file(tmp_path: Path) -> None:
    (tmp_path / "dbos_config.yaml").write_text("name: cli-app\nsys_db_pool_size: -1\n")
    line = assert_clean_failure(run_dbos("migrate", cwd=tmp_path))
    assert "sys_db_pool_size" in line


def test_unreadable_yaml(tmp_path: Path) -> None:
    (tmp_path / "dbos_config.yaml").write_text("name: [unclosed\n")
    line = assert_clean_failure(run_dbos("migrate", cwd=tmp_path))
    assert "not valid YAML" in line


def test_reset_keeps_an_application_sharing_the_database(migrated_url: str, tmp_path: Path) -> None:
    # The app's own table beside ours (a Django or SQLite app sharing the database).
    execute(migrated_url, "CREATE TABLE public_orders (id INTEGER PRIMARY KEY)"
            if sqlite_path(migrated_url) else "CREATE TABLE public.public_orders (id INTEGER PRIMARY KEY)")
    execute(migrated_url, "INSERT INTO public_orders VALUES (7)")
    result = run_dbos("reset", "-y", "-s", migrated_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "kept" in result.stdout
    assert query(migrated_url, "SELECT id FROM public_orders") == [(7,)]
    assert not SYSTEM_TABLES & table_names(migrated_url)
