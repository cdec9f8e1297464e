"""The example Django project (examples/django_app), run the ways Django users run it.

Every Django process is a real subprocess (``manage.py ...``, runserver, a
driver script): Django's settings are configured once per process. The
example's database is SQLite or PostgreSQL to match ``--backend``, fresh for
each test; DBOS keeps its system tables in that same database. What the
processes did is read back through plain driver connections and a
``DBOSClient``. Hand-offs wait on output lines and workflow handles.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Dict, Iterator, List, Set, Tuple

import pytest

from dbos import DBOSClient, DefaultSerializer
from dbos._ops.cli_output import TRANSACT_STATUS_FIELDS
from dbos._sysdb.backend import backend_for
from dbos._sysdb.url import DatabaseURL
from tests.probe import drop_database

from ..conftest import postgres_url
from ..probe import SYSTEM_TABLES, qualified, query, sqlite_path, table_names

pytestmark = pytest.mark.acceptance

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "django_app"
CRASH_DRIVER = Path(__file__).with_name("django_crash.py")
TIMEOUT_S = 60
DBOS_TABLES = SYSTEM_TABLES | {"transaction_outputs"}
LAUNCH_LINE = re.compile(r"Launching DBOS in process (\d+)")


@dataclass
class Project:
    """The example project on one fresh database."""

    database_url: str
    env: Dict[str, str]
    logs: Path
    children: List["subprocess.Popen[str]"] = field(default_factory=list)

    def manage(self, *args: str) -> "subprocess.CompletedProcess[str]":
        return subprocess.run([sys.executable, "manage.py", *args], cwd=EXAMPLE, env=self.env,
                              capture_output=True, text=True, timeout=TIMEOUT_S)

    def ok(self, *args: str) -> str:
        """Standard output of a command that must succeed."""
        result = self.manage(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def as_json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def start(self, log: str, *command: str) -> "subprocess.Popen[str]":
        """A long-running child in a session of its own; its standard error
        (where logging goes) goes to ``log`` in the test's directory."""
        with open(self.logs / log, "w") as errors:
            proc = subprocess.Popen([sys.executable, *command], cwd=EXAMPLE, env=self.env, text=True,
                                    stdout=subprocess.PIPE, stderr=errors, start_new_session=True)
        self.children.append(proc)
        return proc

    def kill_leftovers(self) -> None:
        """SIGKILL the process group of every child still running (a failed test's)."""
        for proc in self.children:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()

    def log(self, name: str) -> List[str]:
        return (self.logs / name).read_text().splitlines()

    def start_worker(self) -> "subprocess.Popen[str]":
        worker = self.start("worker.log", "manage.py", "dbos_worker")
        assert worker.stdout is not None
        assert read_until(worker.stdout, "DBOS worker ready").startswith("DBOS worker ready")
        return worker

    def crash_in_first_transaction(self, workflow_id: str) -> None:
        """Place an order whose process dies between create_order's commit and checkpoint."""
        driver = self.start("crash.log", str(CRASH_DRIVER), workflow_id)
        assert driver.stdout is not None
        assert read_until(driver.stdout, "COMMITTED") == "COMMITTED"
        assert driver.wait(timeout=TIMEOUT_S) == -signal.SIGKILL, self.log("crash.log")

    def dbos_tables(self) -> Set[str]:
        path = sqlite_path(self.database_url)
        if path is not None and not os.path.exists(path):
            return set()
        return table_names(self.database_url) & DBOS_TABLES

    def orders(self, workflow_id: str) -> List[Tuple[Any, ...]]:
        sql = "SELECT status, receipt FROM orders_order WHERE workflow_id = %s"
        return query(self.database_url, sql, (workflow_id,))

    def order_ids(self, workflow_id: str) -> List[int]:
        rows = query(self.database_url, "SELECT id FROM orders_order WHERE workflow_id = %s", (workflow_id,))
        return [int(r[0]) for r in rows]

    def datasource_outputs(self, workflow_id: str) -> List[Tuple[int, Any, Any]]:
        """(step_id, output deserialized, error) of the workflow's rows in ``datasource_outputs``."""
        table = qualified(self.database_url, "datasource_outputs")
        rows = query(self.database_url, f"SELECT step_id, output, error FROM {table} WHERE workflow_id = %s",
                     (workflow_id,))
        return [(int(r[0]), DefaultSerializer().deserialize(r[1]), r[2]) for r in rows]

    def order_count(self) -> int:
        return int(query(self.database_url, "SELECT count(*) FROM orders_order")[0][0])

    def workflow_status(self, workflow_id: str) -> str:
        table = qualified(self.database_url, "workflow_status")
        rows = query(self.database_url, f"SELECT status FROM {table} WHERE workflow_uuid = %s",
                     (workflow_id,))
        return str(rows[0][0])

    def result(self, workflow_id: str) -> Any:
        """The workflow's result, waited for through the system database."""
        client = DBOSClient(system_database_url=self.database_url)
        try:
            return client.retrieve_workflow(workflow_id).get_result()
        finally:
            client.destroy()


def read_until(stream: "IO[str]", prefix: str) -> str:
    """The first line starting with ``prefix`` (blocks on the child's output)."""
    for line in stream:
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"the child ended without printing {prefix!r}")


def stop(proc: "subprocess.Popen[str]") -> str:
    """SIGTERM the child's process group (runserver's reloader and its child
    alike); the rest of its standard output. SIGTERM, not SIGINT: a shell
    running the tests in the background would have its children ignore SIGINT."""
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=TIMEOUT_S)
    return out


@pytest.fixture
def project(backend: str, tmp_path: Path) -> Iterator[Project]:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'shop.sqlite3'}"
    else:
        url = postgres_url(f"dbos_django_{uuid.uuid4().hex[:12]}")
        backend_for(DatabaseURL.parse(url)).create_database()
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env.update(DATABASE_URL=url, PYTHONPATH=os.pathsep.join([str(ROOT), str(EXAMPLE)]),
               PYTHONUNBUFFERED="1")
    project = Project(url, env, tmp_path)
    yield project
    project.kill_leftovers()
    if backend == "postgres":
        parsed = DatabaseURL.parse(url)
        # Also the test database of `manage.py test`, should it have failed to drop it.
        for database in (parsed, parsed.with_database(f"test_{parsed.database}")):
            drop_database(database.render())


# ----------------------------------------------------------------------
# The example's own tests, through Django's test client
# ----------------------------------------------------------------------


def test_the_examples_test_suite_passes_on_this_backend(project: Project) -> None:
    # Its TransactionTestCase posts orders through django.test.Client and
    # checks the rows the ORM wrote and the recorded workflow and steps, on a
    # test database Django creates; launch() moves DBOS's tables there too.
    result = project.manage("test", "orders", "--noinput")
    assert result.returncode == 0, result.stderr
    assert "Ran 4 tests" in result.stderr and "\nOK" in result.stderr, result.stderr
    assert project.dbos_tables() == set()  # the development database was left alone


# ----------------------------------------------------------------------
# Where DBOS launches
# ----------------------------------------------------------------------


def test_check_migrate_and_shell_construct_dbos_but_never_launch(project: Project) -> None:
    checked = project.manage("check")
    assert checked.returncode == 0, checked.stderr
    assert project.dbos_tables() == set()

    project.ok("migrate")
    assert "orders_order" in table_names(project.database_url, schema="public")
    assert project.dbos_tables() == set()

    shown = project.ok("shell", "-c", "import threading; from dbos import DBOS; "
                       "print(DBOS.config['name']); "
                       "print(sorted(t.name for t in threading.enumerate()))")
    name, threads = shown.splitlines()[-2:]
    assert name == "django-example"  # ready() built DBOS from settings.DBOS...
    assert "dbos-" not in threads  # ...and started nothing
    assert project.dbos_tables() == set()


def test_a_bad_dbos_setting_stops_every_command_naming_the_field(project: Project) -> None:
    result = project.manage("check", "--settings", "tests.acceptance.django_bad_settings")
    assert result.returncode != 0
    assert ("ImproperlyConfigured: settings.DBOS is invalid at 'sys_db_pool_size': "
            "must be an integer") in result.stderr, result.stderr


def test_runserver_launches_in_the_serving_child_and_never_in_the_reloader(project: Project) -> None:
    project.ok("migrate")
    port = free_port()
    server = project.start("server.log", "manage.py", "runserver", f"127.0.0.1:{port}")
    assert server.stdout is not None
    try:
        _lines_until(server.stdout, "Quit the server with")
        workflow_id = f"http-{uuid.uuid4().hex[:8]}"
        placed = http(port, "POST", "/orders/", {"item": "mug", "quantity": 2}, workflow_id)
        assert placed == (202, {"workflow_id": workflow_id})
        result = project.result(workflow_id)
        status, shown = http(port, "GET", f"/orders/{workflow_id}/")
        assert status == 200 and shown["status"] == "SUCCESS" and shown["result"] == result
        assert project.orders(workflow_id) == [("paid", result["receipt"])]
    finally:
        stop(server)
    log = project.log("server.log")
    launches = [int(m[1]) for m in map(LAUNCH_LINE.search, log) if m]
    # The autoreloader parent (server.pid) only watches files; each serving
    # child it starts (one, unless a source file changed meanwhile) launches once.
    serving_children = [line for line in log if "Watching for file changes" in line]
    assert launches and server.pid not in launches
    assert len(launches) == len(serving_children), launches


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _lines_until(stream: "IO[str]", prefix: str) -> List[str]:
    lines = []
    for line in stream:
        lines.append(line)
        if line.startswith(prefix):
            return lines
    raise AssertionError(f"the server ended without printing {prefix!r}: {lines}")


def http(port: int, method: str, path: str, body: Any = None, key: str = "") -> Tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        return response.status, json.load(response)


# ----------------------------------------------------------------------
# Crashes, the worker and the management commands
# ----------------------------------------------------------------------


def test_a_crash_after_commit_applies_the_transaction_once_and_the_worker_recovers(
    project: Project,
) -> None:
    workflow_id = f"crash-{uuid.uuid4().hex[:8]}"
    project.crash_in_first_transaction(workflow_id)
    # The order is committed; its checkpoint and the rest of the workflow are not.
    assert project.orders(workflow_id) == [("placed", "")]
    pending = project.as_json("dbos_workflow", "list", "--status", "PENDING")
    assert [s["workflow_id"] for s in pending] == [workflow_id]

    worker = project.start_worker()
    try:
        result = project.result(workflow_id)  # recovered by the worker at launch
        # The replayed create_order found its recorded output: still one order.
        assert project.orders(workflow_id) == [("paid", result["receipt"])]
        steps = project.as_json("dbos_workflow", "steps", workflow_id)
        assert [s["function_name"] for s in steps] == ["create_order", "charge_card", "mark_paid"]

        fork = project.as_json("dbos_workflow", "fork", workflow_id, "--step", "3")
        assert fork["workflow_id"] != workflow_id and fork["status"] == "ENQUEUED"
        assert project.result(fork["workflow_id"]) == result  # the worker ran it off the queue
        assert project.order_count() == 1  # the fork replayed create_order too
    finally:
        out = stop(worker)
    assert "DBOS worker stopped" in out and worker.returncode == 0


def test_cancel_then_resume_from_the_command_line(project: Project) -> None:
    workflow_id = f"cancel-{uuid.uuid4().hex[:8]}"
    project.crash_in_first_transaction(workflow_id)

    assert project.ok("dbos_workflow", "cancel", workflow_id).strip() == f"Cancelled workflow {workflow_id}"
    shown = project.as_json("dbos_workflow", "get", workflow_id)
    assert shown["status"] == "CANCELLED"
    assert list(shown) == list(TRANSACT_STATUS_FIELDS)  # `dbos workflow get`'s JSON, key for key
    resumed = project.as_json("dbos_workflow", "resume", workflow_id)
    assert resumed["status"] == "ENQUEUED" and resumed["queue_name"] == "_dbos_internal_queue"

    worker = project.start_worker()
    try:
        result = project.result(workflow_id)
        assert project.orders(workflow_id) == [("paid", result["receipt"])]
        assert project.workflow_status(workflow_id) == "SUCCESS"
    finally:
        stop(worker)


def test_dbos_migrate_creates_the_tables_the_workflow_commands_need(project: Project) -> None:
    before = project.manage("dbos_workflow", "list")
    assert before.returncode == 1
    assert "run `python manage.py dbos_migrate` first" in before.stderr, before.stderr
    assert project.dbos_tables() == set()  # looking created nothing

    migrated = project.ok("dbos_migrate")
    assert migrated.startswith("Migrated the DBOS system database at ")
    assert project.dbos_tables() == DBOS_TABLES
    assert project.ok("dbos_workflow", "list").strip() == "No workflows found."
    missing = project.manage("dbos_workflow", "get", "no-such-workflow")
    assert missing.returncode == 1 and "no-such-workflow does not exist" in missing.stderr


def test_a_datasource_transaction_crashed_after_commit_applies_once_on_relaunch(project: Project) -> None:
    # The same crash with a 2.x datasource, DjangoDatasource.create(): its
    # outcomes go to datasource_outputs, beside the ORM's row.
    workflow_id = f"ds-{uuid.uuid4().hex[:8]}"
    runs = project.logs / "runs.txt"
    crashed = project.start("ds-crash.log", str(CRASH_DRIVER), "ds", workflow_id, "1", str(runs))
    assert crashed.stdout is not None
    assert read_until(crashed.stdout, "COMMITTED") == "COMMITTED"
    assert crashed.wait(timeout=TIMEOUT_S) == -signal.SIGKILL, project.log("ds-crash.log")
    (order_id,) = project.order_ids(workflow_id)
    assert project.datasource_outputs(workflow_id) == [(1, order_id, None)]
    assert project.workflow_status(workflow_id) == "PENDING"

    relaunched = project.start("ds-relaunch.log", str(CRASH_DRIVER), "ds", workflow_id, "0", str(runs))
    out, _ = relaunched.communicate(timeout=TIMEOUT_S)
    assert relaunched.returncode == 0, project.log("ds-relaunch.log")
    lines = out.splitlines()
    # The replay returned the recorded order ID; the function ran only before the crash.
    assert f"RESULT {order_id}" in lines, lines
    assert f"STEPS {json.dumps([[1, 'create_order_ds', order_id]])}" in lines, lines
    assert runs.read_text().splitlines() == ["ran"]
    assert project.order_ids(workflow_id) == [order_id] and project.order_count() == 1
    assert project.datasource_outputs(workflow_id) == [(1, order_id, None)]
    assert project.workflow_status(workflow_id) == "SUCCESS"
