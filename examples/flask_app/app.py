"""A Flask app whose greetings are durable workflows.

``POST /greetings`` with ``{"name": "Ada"}`` starts a workflow and answers
202 with its ID; ``GET /greetings/<workflow_id>`` shows the workflow's status
and, once it has finished, its result; ``GET /greetings`` lists the rows the
workflows wrote. The workflow runs a step (composing the message, standing in
for a call to another service) and a transaction that writes the row through
Peewee models, in the application database DBOS opened.

Send ``dbos-idempotency-key: <key>`` with a POST and the workflow gets that ID:
posting again with the same key returns the same workflow and writes no
second row. ``x-request-id`` names the request; the row records it.

Run it (see README.md beside this file):

    flask --app examples/flask_app/app.py run        # SQLite files here
    APP_DATABASE_URL=postgresql://postgres@localhost:5432/greetings \\
        flask --app examples/flask_app/app.py run    # PostgreSQL
"""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, List, Optional

import peewee as pw
from flask import Blueprint, Flask, abort, request
from flask.typing import ResponseReturnValue

from dbos import DBOS, DBOSConfig
from dbos.contrib.flask import DBOSFlask, current_request

# ----------------------------------------------------------------------
# The application's table, through Peewee
# ----------------------------------------------------------------------

# DBOS opens the application database from application_database_url when it
# launches; the models are bound to it then (see use_app_database).
database = pw.DatabaseProxy()


class Greeting(pw.Model):
    id = pw.AutoField()
    name = pw.TextField()
    message = pw.TextField()
    request_id = pw.TextField()

    class Meta:
        database = database
        table_name = "greetings"


_bind_lock = threading.Lock()
_tables_ready = False


def use_app_database() -> pw.DatabaseProxy:
    """Bind the models to DBOS's application database, creating their table,
    the first time anything needs them (DBOS must be launched by then)."""
    global _tables_ready
    with _bind_lock:
        if not _tables_ready:
            database.initialize(DBOS.app_datasource.database)
            # Its own short transaction, never inside a @DBOS.transaction: a
            # rolled-back CREATE TABLE must not leave us thinking it exists.
            with database.connection_context(), database.atomic():
                database.create_tables([Greeting], safe=True)
            _tables_ready = True
    return database


# ----------------------------------------------------------------------
# The durable workflow
# ----------------------------------------------------------------------


@DBOS.step()
def compose_message(name: str) -> str:
    # Stands in for a call to another service. Its answer is checkpointed: a
    # workflow recovered after a crash reuses it instead of calling again.
    return f"Hello, {name}!"


@DBOS.transaction()
def save_greeting(name: str, message: str, request_id: str) -> int:
    # Runs in a transaction of the application database; the models' queries
    # join it, and DBOS records the result in the same transaction, so a
    # recovered workflow never inserts the row twice.
    greeting = Greeting.create(name=name, message=message, request_id=request_id)
    return int(greeting.id)


@DBOS.workflow()
def greet(name: str, request_id: str) -> Dict[str, Any]:
    # Plain workflow code, not a step: it runs again when the workflow is
    # recovered, and a workflow recovered at launch may get here before any
    # request has bound the models.
    use_app_database()
    message = compose_message(name)
    greeting_id = save_greeting(name, message, request_id)
    return {"id": greeting_id, "message": message}


# ----------------------------------------------------------------------
# HTTP
# ----------------------------------------------------------------------

greetings = Blueprint("greetings", __name__)


@greetings.post("/greetings")
def start_greeting() -> ResponseReturnValue:
    body = request.get_json(silent=True) or {}
    name = body.get("name")
    if not isinstance(name, str) or not name:
        return {"error": 'send JSON {"name": "..."}'}, 400
    # Set by DBOS's middleware: the x-request-id header, or a new UUID.
    info = current_request()
    request_id = info.request_id if info is not None else ""
    # With a dbos-idempotency-key header, this workflow gets that ID; a
    # second POST with the same key finds it and starts nothing new.
    handle = DBOS.start_workflow(greet, name, request_id)
    return {"workflow_id": handle.workflow_id, "request_id": request_id}, 202


@greetings.get("/greetings/<workflow_id>")
def greeting_status(workflow_id: str) -> ResponseReturnValue:
    status = DBOS.get_workflow_status(workflow_id)
    if status is None:
        abort(404)
    return {
        "workflow_id": workflow_id,
        "status": status.status,
        "result": status.output if status.status == "SUCCESS" else None,
        "error": str(status.error) if status.error is not None else None,
    }


@greetings.get("/greetings")
def list_greetings() -> ResponseReturnValue:
    db = use_app_database()
    with db.connection_context():  # gives the pooled connection back afterwards
        rows: List[Dict[str, Any]] = [
            {"id": g.id, "name": g.name, "message": g.message, "request_id": g.request_id}
            for g in Greeting.select().order_by(Greeting.id)
        ]
    return {"greetings": rows}


# ----------------------------------------------------------------------
# The app
# ----------------------------------------------------------------------


def config_from_env() -> DBOSConfig:
    """SQLite files in the working directory unless APP_DATABASE_URL says otherwise.

    The system database defaults to the application database's SQLite file,
    or on PostgreSQL to a database named after it with ``_dbos_sys``.
    """
    config: DBOSConfig = {
        "name": "flask-greetings",
        "application_database_url": os.environ.get(
            "APP_DATABASE_URL", "sqlite:///flask_greetings.sqlite"
        ),
        "application_datasource": "peewee",
    }
    system_url = os.environ.get("DBOS_SYSTEM_DATABASE_URL")
    if system_url:
        config["system_database_url"] = system_url
    return config


def create_app(config: Optional[DBOSConfig] = None) -> Flask:
    """The app factory ``flask --app`` finds; tests pass their own config."""
    app = Flask(__name__)
    # Constructs DBOS, runs each request in a DBOS context, adds the
    # `flask dbos` commands, and launches DBOS before the first request.
    DBOSFlask(app, config=config if config is not None else config_from_env())
    app.register_blueprint(greetings)
    return app


if __name__ == "__main__":
    flask_app = create_app()
    # Launch now rather than at the first request, so workflows a crash
    # interrupted resume at once.
    DBOS.launch()
    flask_app.run()
