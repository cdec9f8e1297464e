"""The Flask integration, through the example app and small apps of its own.

Requests go through Flask's test client, commands through its CLI runner (and
once through the real ``flask`` command); what the workflows did is read back
from both databases over the test's own connections.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, Iterator, List

import pytest
from flask import Flask

from dbos import DBOS, DBOSConfig
from dbos import _runtime as runtime
from dbos._engine.context import get_context
from dbos._ops.cli_output import TRANSACT_STATUS_FIELDS
from dbos.contrib.flask import DBOSFlask, current_request
from dbos._engine.engine import peek_engine
from dbos.error import DBOSInitializationError
from dbos._sysdb import latest_version
from tests.integration.web_support import (
    EXAMPLES,
    app_config,
    drop_app_db,
    greeting_rows,
    load_example,
    new_app_db_url,
    recorded_status,
    workflow_count,
)
from tests.probe import database_exists, migration_version


@pytest.fixture
def example() -> Iterator[ModuleType]:
    yield from load_example("flask_app/app.py")


@pytest.fixture
def app_db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    url = new_app_db_url(backend, tmp_path)
    yield url
    drop_app_db(url)


@pytest.fixture
def example_config(sys_db_url: str, app_db_url: str) -> DBOSConfig:
    return app_config(sys_db_url, app_db_url)


@pytest.fixture
def app(example: ModuleType, example_config: DBOSConfig) -> Flask:
    created: Flask = example.create_app(example_config)
    return created


def post_greeting(app: Flask, name: str, **headers: str) -> Dict[str, Any]:
    response = app.test_client().post("/greetings", json={"name": name}, headers=headers)
    assert response.status_code == 202, response.get_data(as_text=True)
    body: Dict[str, Any] = response.get_json()
    return body


# ----------------------------------------------------------------------
# The example app
# ----------------------------------------------------------------------


def test_post_runs_a_workflow_that_writes_through_the_orm(
    app: Flask, sys_db_url: str, app_db_url: str
) -> None:
    assert peek_engine() is None  # DBOSFlask launches at the first request, not before
    started = post_greeting(app, "Ada", **{"x-request-id": "req-1"})
    workflow_id = started["workflow_id"]
    assert peek_engine() is not None

    result = DBOS.retrieve_workflow(workflow_id).get_result()
    assert result == {"id": 1, "message": "Hello, Ada!"}
    assert greeting_rows(app_db_url) == [("Ada", "Hello, Ada!", "req-1")]
    assert recorded_status(sys_db_url, workflow_id) == ("SUCCESS", "greet")

    client = app.test_client()
    shown = client.get(f"/greetings/{workflow_id}").get_json()
    assert shown == {"workflow_id": workflow_id, "status": "SUCCESS", "result": result,
                     "error": None}
    assert client.get("/greetings").get_json()["greetings"] == [
        {"id": 1, "name": "Ada", "message": "Hello, Ada!", "request_id": "req-1"}
    ]
    assert client.get("/greetings/no-such-workflow").status_code == 404


def test_idempotency_key_names_the_workflow_and_a_repeat_runs_nothing(
    app: Flask, sys_db_url: str, app_db_url: str
) -> None:
    key = f"order-{uuid.uuid4().hex[:8]}"
    first = post_greeting(app, "Ada", **{"dbos-idempotency-key": key})
    assert first["workflow_id"] == key
    DBOS.retrieve_workflow(key).get_result()
    again = post_greeting(app, "Ada", **{"dbos-idempotency-key": key})
    assert again["workflow_id"] == key
    assert DBOS.retrieve_workflow(key).get_result() == {"id": 1, "message": "Hello, Ada!"}
    assert len(greeting_rows(app_db_url)) == 1
    assert workflow_count(sys_db_url) == 1

    # The key belonged to those requests only; a blank one counts as none.
    later = post_greeting(app, "Bob", **{"dbos-idempotency-key": "  "})
    assert later["workflow_id"] != key
    DBOS.retrieve_workflow(later["workflow_id"]).get_result()
    assert [row[0] for row in greeting_rows(app_db_url)] == ["Ada", "Bob"]


def test_request_id_comes_from_the_header_or_is_a_new_uuid(app: Flask, app_db_url: str) -> None:
    named = post_greeting(app, "Ada", **{"x-request-id": "req-42"})
    unnamed = post_greeting(app, "Bob")
    assert named["request_id"] == "req-42"
    assert str(uuid.UUID(unnamed["request_id"])) == unnamed["request_id"]
    for started in (named, unnamed):
        DBOS.retrieve_workflow(started["workflow_id"]).get_result()
    # The two workflows ran concurrently: the rows may be in either order.
    assert {(row[0], row[2]) for row in greeting_rows(app_db_url)} == {
        ("Ada", "req-42"), ("Bob", unnamed["request_id"])}


# ----------------------------------------------------------------------
# DBOS(config=..., flask=app), as in DBOS Transact
# ----------------------------------------------------------------------


def test_flask_argument_installs_the_middleware_without_launching(config: DBOSConfig) -> None:
    app = Flask(__name__)
    seen: List[Any] = []

    @app.get("/")
    def index() -> str:
        seen.append(current_request())
        return "ok"

    DBOS(config=config, flask=app)
    response = app.test_client().get("/?q=1", headers={"x-request-id": "req-7"})
    assert response.status_code == 200
    assert peek_engine() is None  # spec 14.2: the application launches DBOS
    info = seen[0]
    assert (info.request_id, info.method, info.url) == ("req-7", "GET", "http://localhost/?q=1")
    assert get_context() is None and current_request() is None  # restored after the request
    assert "dbos" in app.cli.commands
    assert app.extensions["dbos"].launch is False


def test_only_the_first_workflow_a_handler_starts_gets_the_key(config: DBOSConfig) -> None:
    @DBOS.workflow()
    def echo(n: int) -> int:
        return n

    app = Flask(__name__)

    @app.post("/two")
    def two() -> Dict[str, Any]:
        first = DBOS.start_workflow(echo, 1)
        second = DBOS.start_workflow(echo, 2)
        return {"ids": [first.workflow_id, second.workflow_id]}

    DBOS(config=config, flask=app)
    DBOS.launch()
    ids = app.test_client().post("/two", headers={"dbos-idempotency-key": "k-2"}).get_json()["ids"]
    assert ids[0] == "k-2" and ids[1] != "k-2"
    assert [DBOS.retrieve_workflow(i).get_result() for i in ids] == [1, 2]


def test_a_flask_argument_that_is_not_a_flask_app_fails_construction(config: DBOSConfig) -> None:
    with pytest.raises(DBOSInitializationError, match="flask.Flask"):
        DBOS(config=config, flask=object())
    assert runtime.current() is None


# ----------------------------------------------------------------------
# DBOSFlask: the extension protocol
# ----------------------------------------------------------------------


def test_init_app_constructs_dbos_and_launches_at_the_first_request(config: DBOSConfig) -> None:
    @DBOS.workflow()
    def double(n: int) -> int:
        return 2 * n

    extension = DBOSFlask(config=config)
    assert DBOS.config is None  # nothing happens before init_app
    apps = [Flask("first"), Flask("second")]
    for app in apps:
        extension.init_app(app)

        @app.post("/double")
        def run() -> Dict[str, Any]:
            return {"result": DBOS.start_workflow(double, 21).get_result()}

    assert all(app.extensions["dbos"] is extension for app in apps)
    assert DBOS.config is not None and DBOS.config["name"] == config["name"]
    assert peek_engine() is None
    for app in apps:  # one DBOS serves both apps
        response = app.test_client().post("/double", headers={"dbos-idempotency-key": app.name})
        assert response.get_json() == {"result": 42}
    assert peek_engine() is not None
    assert DBOS.get_workflow_status("first") is not None
    assert DBOS.get_workflow_status("second") is not None


def test_init_app_reads_the_config_from_the_flask_config(config: DBOSConfig) -> None:
    app = Flask(__name__)
    app.config["DBOS_CONFIG"] = {**config, "name": "from-flask-config"}
    DBOSFlask(app)
    assert DBOS.config is not None and DBOS.config["name"] == "from-flask-config"


def test_launch_false_leaves_launching_to_the_application(config: DBOSConfig) -> None:
    app = Flask(__name__)
    app.get("/")(lambda: "ok")
    DBOSFlask(app, config=config, launch=False)
    assert app.test_client().get("/").status_code == 200
    assert peek_engine() is None


# ----------------------------------------------------------------------
# flask dbos ...
# ----------------------------------------------------------------------


def test_flask_dbos_migrate_creates_the_system_database_without_launching(
    app: Flask, sys_db_url: str
) -> None:
    assert not database_exists(sys_db_url)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["dbos", "migrate"])
    assert result.exit_code == 0, result.output
    assert f"to version {latest_version()}" in result.output
    assert migration_version(sys_db_url) == latest_version()
    assert peek_engine() is None  # a command process starts no workflows
    again = runner.invoke(args=["dbos", "migrate"])
    assert again.exit_code == 0 and "is up to date" in again.output


def test_migrate_then_launch_with_run_migrations_off(
    example: ModuleType, example_config: DBOSConfig, sys_db_url: str
) -> None:
    # Why DBOSFlask does not launch in init_app: with run_migrations off,
    # launching there would fail before `flask dbos migrate` could run.
    app: Flask = example.create_app({**example_config, "run_migrations": False})
    assert app.test_cli_runner().invoke(args=["dbos", "migrate"]).exit_code == 0
    started = post_greeting(app, "Ada")
    assert DBOS.retrieve_workflow(started["workflow_id"]).get_result()["message"] == "Hello, Ada!"


def test_flask_dbos_workflow_list(app: Flask, sys_db_url: str) -> None:
    runner = app.test_cli_runner()
    missing = runner.invoke(args=["dbos", "workflow", "list"])
    assert missing.exit_code == 1 and "does not exist" in missing.output
    assert not database_exists(sys_db_url)  # looking created nothing

    post_greeting(app, "Ada", **{"dbos-idempotency-key": "listed-wf"})
    DBOS.retrieve_workflow("listed-wf").get_result()
    table = runner.invoke(args=["dbos", "workflow", "list"])
    assert table.exit_code == 0, table.output
    assert "listed-wf" in table.output and "SUCCESS" in table.output and "greet" in table.output
    as_json = runner.invoke(args=["dbos", "workflow", "list", "--json"])
    listed = json.loads(as_json.output)
    assert [(w["workflow_id"], w["status"]) for w in listed] == [("listed-wf", "SUCCESS")]
    assert list(listed[0]) == list(TRANSACT_STATUS_FIELDS)  # `dbos workflow list`'s JSON, key for key
    pending = runner.invoke(args=["dbos", "workflow", "list", "--status", "pending"])
    assert pending.output.strip() == "No workflows found."


def test_the_flask_command_finds_the_example_and_migrates(sys_db_url: str, app_db_url: str) -> None:
    env = {**os.environ, "APP_DATABASE_URL": app_db_url, "DBOS_SYSTEM_DATABASE_URL": sys_db_url}
    flask = Path(sys.executable).parent / "flask"
    command = [str(flask), "--app", str(EXAMPLES / "flask_app" / "app.py"), "dbos", "migrate"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Migrated the system database" in done.stdout
    assert migration_version(sys_db_url) == latest_version()
