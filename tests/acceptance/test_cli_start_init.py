"""``dbos start`` and ``dbos init``, run as the installed console script.

``dbos start`` runs the configuration file's start commands in a process
group of their own, passes SIGINT and SIGTERM on to that group and exits
with the command's status. ``dbos init`` writes the bundled starter app,
which ``dbos start`` then serves: the test calls it over HTTP and reads the
workflows back with ``dbos workflow list``, on the chosen backend.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest

from dbos._sysdb import DatabaseURL

from ..integration.test_cli import CONSOLE_SCRIPT, assert_clean_failure, run_dbos
from ..probe import drop_database

pytestmark = pytest.mark.acceptance

WAIT_S = 60.0  # an upper bound reached only when a test is already failing
START_CHILD = Path(__file__).with_name("start_child.py")


def write_start_config(directory: Path, commands: List[str]) -> None:
    lines = ["name: start-app", "runtimeConfig:", "  start:"]
    lines += [f"    - {json.dumps(command)}" for command in commands]
    (directory / "dbos-config.yaml").write_text("\n".join(lines) + "\n")


def venv_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """This environment, with the test's virtualenv first on PATH (`python3` is its Python)."""
    env = dict(os.environ, PATH=f"{CONSOLE_SCRIPT.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.update(extra or {})
    return env


class Started:
    """``dbos start`` in ``directory``, its standard output read line by line."""

    def __init__(self, directory: Path, env: Optional[Dict[str, str]] = None) -> None:
        self.proc = subprocess.Popen([str(CONSOLE_SCRIPT), "start"], cwd=directory, env=venv_env(env),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.seen: List[str] = []

    def expect(self, prefix: str) -> str:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.seen.append(line)
            if line.startswith(prefix):
                return line.strip()
        raise AssertionError(f"dbos start ended without printing {prefix!r}:\n{''.join(self.seen)}")

    def wait(self) -> int:
        return self.proc.wait(timeout=WAIT_S)

    def reap(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=WAIT_S)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def started() -> Iterator[List[Started]]:
    runs: List[Started] = []
    yield runs
    for run in runs:
        run.reap()


# ----------------------------------------------------------------------
# dbos start
# ----------------------------------------------------------------------


def test_start_runs_the_commands_in_order_and_exits_with_the_first_failure(tmp_path: Path) -> None:
    log = tmp_path / "log"
    write_start_config(tmp_path, [f"echo one >> {log}", "exit 7", f"echo three >> {log}"])
    result = run_dbos("start", cwd=tmp_path)
    assert result.returncode == 7, result.stderr
    assert log.read_text() == "one\n"
    assert "Executing: exit 7" in result.stdout


def test_start_exits_zero_when_every_command_succeeds(tmp_path: Path) -> None:
    log = tmp_path / "log"
    write_start_config(tmp_path, [f"echo one >> {log}", f"echo two >> {log}"])
    result = run_dbos("start", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert log.read_text() == "one\ntwo\n"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_start_passes_the_signal_to_the_commands_group_and_exits_with_its_status(
    sig: signal.Signals, tmp_path: Path, started: List[Started]
) -> None:
    write_start_config(tmp_path, [f"python3 {START_CHILD} 42; echo NOT-AFTER-A-SIGNAL"])
    run = Started(tmp_path)
    started.append(run)
    _, pid, pgid, grandchild = run.expect("READY").split()
    # Its own group: a terminal's Ctrl-C reaches dbos start only, which passes it on.
    assert int(pgid) not in (os.getpgid(run.proc.pid), os.getpgid(0))
    run.proc.send_signal(sig)
    assert run.expect("GOT") == f"GOT {int(sig)}"
    # The whole group got it: the command's own child too.
    assert run.expect("GRANDCHILD") == f"GRANDCHILD {-int(sig)}"
    assert run.wait() == 42
    assert run.proc.stdout is not None
    assert "NOT-AFTER-A-SIGNAL" not in run.proc.stdout.read()


def test_start_without_a_config_file_is_one_line(tmp_path: Path) -> None:
    line = assert_clean_failure(run_dbos("start", cwd=tmp_path))
    assert line.startswith("dbos start: No dbos_config.yaml or dbos-config.yaml in ")


def test_start_without_start_commands_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "dbos-config.yaml").write_text("name: start-app\n")
    line = assert_clean_failure(run_dbos("start", cwd=tmp_path))
    assert "runtimeConfig.start" in line


# ----------------------------------------------------------------------
# dbos init
# ----------------------------------------------------------------------


def test_init_writes_the_starter_and_keeps_existing_files(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    (project / "README.md").write_text("mine\n")
    result = run_dbos("init", "my-shop", cwd=project)
    assert result.returncode == 0, result.stderr
    assert (project / "README.md").read_text() == "mine\n"
    assert "README.md already exists, skipping" in result.stdout
    config = (project / "dbos-config.yaml").read_text()
    assert "name: my-shop" in config and '- "python3 -m my_shop.main"' in config
    main = (project / "my_shop" / "main.py").read_text()
    compile(main, "main.py", "exec")
    assert "{{" not in main + config
    assert sorted(p.name for p in project.rglob("*") if p.is_file()) == [
        "README.md", "__init__.py", "dbos-config.yaml", "main.py"]


def test_init_config_only_writes_the_config_file(tmp_path: Path) -> None:
    result = run_dbos("init", "solo-app", "--config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["dbos-config.yaml"]
    assert '- "python3 main.py"' in (tmp_path / "dbos-config.yaml").read_text()


def test_init_names_the_app_after_the_folder_by_default(tmp_path: Path) -> None:
    project = tmp_path / "Orders Service"
    project.mkdir()
    result = run_dbos("init", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "name: orders-service" in (project / "dbos-config.yaml").read_text()
    assert (project / "orders_service" / "main.py").is_file()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["Bad Name"], "Invalid PROJECT_NAME 'Bad Name'"),
        (["good-name", "-t", "dbos-app-starter"], "is downloaded from GitHub by DBOS Transact"),
        (["good-name", "-t", "nonesuch"], "No template named nonesuch; use one of: dbos-db-starter"),
    ],
)
def test_init_refuses_bad_names_and_templates_in_one_line(
    args: List[str], expected: str, tmp_path: Path
) -> None:
    line = assert_clean_failure(run_dbos("init", *args, cwd=tmp_path))
    assert expected in line
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def app_database_url(backend: str, fresh_postgres_url: str) -> Iterator[Optional[str]]:
    """DBOS_DATABASE_URL for the starter: None (its SQLite default) or a fresh PostgreSQL database."""
    if backend == "sqlite":
        yield None
        return
    yield fresh_postgres_url
    # The starter's system database, named after the application database.
    url = DatabaseURL.parse(fresh_postgres_url)
    drop_database(url.with_database(f"{url.database}_dbos_sys").render())


def greet(port: str, name: str, key: Optional[str] = None) -> Dict[str, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/greeting/{name}",
                                     headers={"Idempotency-Key": key} if key else {})
    with urllib.request.urlopen(request, timeout=WAIT_S) as response:
        body: Dict[str, str] = json.loads(response.read())
    return body


def test_the_starter_app_runs_under_dbos_start(
    tmp_path: Path, app_database_url: Optional[str], started: List[Started]
) -> None:
    assert run_dbos("init", "greeter", cwd=tmp_path).returncode == 0
    env = {"PORT": "0"}
    if app_database_url is not None:
        env["DBOS_DATABASE_URL"] = app_database_url
    run = Started(tmp_path, env)
    started.append(run)
    port = run.expect("Serving on http://127.0.0.1:").rsplit(":", 1)[1]

    assert greet(port, "alice")["message"] == "Hello, alice! You have been greeted once."
    first = greet(port, "alice", key="visit-2")
    assert first == {"workflow_id": "visit-2", "message": "Hello, alice! You have been greeted 2 times."}
    assert greet(port, "alice", key="visit-2") == first  # the same workflow: counted once

    listed = run_dbos("workflow", "list", cwd=tmp_path, env=venv_env(env))
    assert listed.returncode == 0, listed.stderr
    workflows = json.loads(listed.stdout)
    assert [w["name"] for w in workflows] == ["greet", "greet"]
    assert workflows[1]["workflow_id"] == "visit-2" and workflows[1]["input"]["args"] == ["alice"]

    run.proc.send_signal(signal.SIGINT)  # Ctrl-C: the app stops cleanly
    assert run.wait() == 0, "".join(run.seen)
