"""A FastAPI app whose greetings are durable workflows.

The FastAPI twin of examples/flask_app: ``POST /greetings`` with
``{"name": "Ada"}`` starts a workflow (a step, then a Peewee transaction in
the application database) and answers 202 with its ID;
``GET /greetings/{workflow_id}`` shows its status and result.

``DBOS(config=..., fastapi=app)`` launches DBOS when the server starts (after
the app's own lifespan startup) and destroys it when the server stops; a
``DBOSException`` a handler lets escape becomes a JSON error response; and
each request runs in a DBOS context: ``dbos-idempotency-key`` names the first
workflow the handler starts, ``x-request-id`` names the request.

Run it (uvicorn is not a dependency of DBOS: ``pip install uvicorn``):

    uvicorn --factory examples.fastapi_app:create_app     # SQLite files here
    APP_DATABASE_URL=postgresql://postgres@localhost:5432/greetings \\
        uvicorn --factory examples.fastapi_app:create_app
"""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, Optional

import peewee as pw
from fastapi import Body, FastAPI, HTTPException

from dbos import DBOS, DBOSConfig
from dbos.contrib.fastapi import current_request

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
            # Its own short transaction, never inside a @DBOS.transaction.
            with database.connection_context(), database.atomic():
                database.create_tables([Greeting], safe=True)
            _tables_ready = True
    return database


@DBOS.step()
def compose_message(name: str) -> str:
    # Stands in for a call to another service; its answer is checkpointed.
    return f"Hello, {name}!"


@DBOS.transaction()
def save_greeting(name: str, message: str, request_id: str) -> int:
    # The models' queries join DBOS's transaction, which also records the
    # result: a recovered workflow never inserts the row twice.
    return int(Greeting.create(name=name, message=message, request_id=request_id).id)


@DBOS.workflow()
def greet(name: str, request_id: str) -> Dict[str, Any]:
    # Not a step: a workflow recovered at launch runs this before any request.
    use_app_database()
    message = compose_message(name)
    return {"id": save_greeting(name, message, request_id), "message": message}


def config_from_env() -> DBOSConfig:
    """SQLite files in the working directory unless APP_DATABASE_URL says otherwise."""
    config: DBOSConfig = {
        "name": "fastapi-greetings",
        "application_database_url": os.environ.get(
            "APP_DATABASE_URL", "sqlite:///fastapi_greetings.sqlite"
        ),
        "application_datasource": "peewee",
    }
    system_url = os.environ.get("DBOS_SYSTEM_DATABASE_URL")
    if system_url:
        config["system_database_url"] = system_url
    return config


def create_app(config: Optional[DBOSConfig] = None) -> FastAPI:
    app = FastAPI(title="Durable greetings")
    DBOS(config=config if config is not None else config_from_env(), fastapi=app)

    @app.post("/greetings", status_code=202)
    def start_greeting(name: str = Body(embed=True, min_length=1)) -> Dict[str, str]:
        # A sync endpoint runs in a worker thread, in a copy of the request's
        # DBOS context: the idempotency key and request ID reach it.
        info = current_request()
        request_id = info.request_id if info is not None else ""
        handle = DBOS.start_workflow(greet, name, request_id)
        return {"workflow_id": handle.workflow_id, "request_id": request_id}

    @app.get("/greetings/{workflow_id}")
    async def greeting_status(workflow_id: str) -> Dict[str, Any]:
        status = await DBOS.get_workflow_status_async(workflow_id)
        if status is None:
            raise HTTPException(status_code=404, detail=f"no workflow {workflow_id}")
        return {
            "workflow_id": workflow_id,
            "status": status.status,
            "result": status.output if status.status == "SUCCESS" else None,
        }

    return app
