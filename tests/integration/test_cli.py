"""The ``dbos`` command line, run as real processes against the chosen backend.

Most tests run ``python -m dbos``; some run the installed ``dbos`` console
script, so the entry point itself is covered too. What a command did is read
back over the test's own connections (sqlite3 or psycopg2).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator, List, Optional, Sequence
from urllib.parse import urlsplit

import pytest

from dbos._versions import package_version
from dbos._sysdb import latest_version

from ..probe import (
    SYSTEM_TABLES,
    database_exists,
    execute,
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
    script: bool = False,
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


def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run_dbos(cwd=tmp_path)
    assert result.returncode == 2
    assert "usage: dbos" in result.stderr and "Traceback" not in result.stderr


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
