"""A durable app on one DBOS Transact 2.x datasource, killed between a
transaction's commit and its checkpoint, then relaunched.

    python ds_crash_app.py SYS_URL APP_URL WORKFLOW_ID CRASH(0|1) KIND RUNS_FILE

KIND is the datasource made with ``create(...)``: sqlalchemy, async_sqlalchemy
(an async workflow awaiting an ``async def`` transaction), peewee, dbapi or
django (Django configured in this process on APP_URL). The workflow calls one
``@ds.transaction(name="bump")`` function, which bumps the ``counter`` table
through ``ds.sql_session()`` and returns the new value; each run of its body
appends a line to RUNS_FILE, outside any database.

With CRASH=1 the process prints "COMMITTED" and kills itself by SIGKILL right
after the transaction commits, before the step checkpoint. With CRASH=0,
``DBOS.launch()`` recovers the workflow and the process prints
"RESULT <value>", "COUNTER <value>" and "STEPS <json>" (from
``DBOS.list_workflow_steps``).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, Callable, List, Tuple

from crash_app import BUMP, COUNTER_TABLE, READ, _crash_before_checkpoint

from dbos import DBOS, DBOSConfig, SetWorkflowID

STEP_NAME = "bump"
Rows = List[Tuple[Any, ...]]


# ----------------------------------------------------------------------
# One statement on the session each kind's sql_session() returns
# ----------------------------------------------------------------------


def _cursor_rows(cursor: Any) -> Rows:
    return [tuple(row) for row in cursor.fetchall()] if cursor.description else []


def sqlalchemy_execute(session: Any, sql: str) -> Rows:
    import sqlalchemy as sa

    result = session.execute(sa.text(sql))
    return [tuple(row) for row in result.fetchall()] if result.returns_rows else []


def peewee_execute(database: Any, sql: str) -> Rows:
    return _cursor_rows(database.execute_sql(sql))


def dbapi_execute(connection: Any, sql: str) -> Rows:
    cursor = connection.cursor()
    try:
        cursor.execute(sql)
        return _cursor_rows(cursor)
    finally:
        cursor.close()


def django_execute(connection: Any, sql: str) -> Rows:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return _cursor_rows(cursor)


EXECUTE = {"sqlalchemy": sqlalchemy_execute, "peewee": peewee_execute,
           "dbapi": dbapi_execute, "django": django_execute}


# ----------------------------------------------------------------------
# The datasources
# ----------------------------------------------------------------------


def setup_django(app_url: str) -> None:
    """Django configured in this process, its default database on ``app_url`` (created if missing)."""
    import django
    from django.conf import settings

    from dbos._sysdb.backend import backend_for
    from dbos._sysdb.url import DatabaseURL

    parsed = DatabaseURL.parse(app_url)
    backend_for(parsed).create_database()
    if parsed.is_sqlite:
        database = {"ENGINE": "django.db.backends.sqlite3", "NAME": parsed.sqlite_path}
    else:
        database = {"ENGINE": "django.db.backends.postgresql", "NAME": parsed.database,
                    "USER": parsed.user or "", "PASSWORD": parsed.password or "",
                    "HOST": parsed.host or "", "PORT": str(parsed.port or "")}
    settings.configure(DATABASES={"default": database}, INSTALLED_APPS=[], USE_TZ=True)
    django.setup()


def make_datasource(kind: str, app_url: str) -> Any:
    if kind == "sqlalchemy":
        from dbos import SQLAlchemyDatasource

        return SQLAlchemyDatasource.create(app_url)
    if kind == "peewee":
        from dbos import PeeweeDatasource

        return PeeweeDatasource.create(app_url)
    if kind == "dbapi":
        from dbos import DBAPIDatasource

        return DBAPIDatasource.create(app_url)
    setup_django(app_url)
    from dbos.contrib.django import DjangoDatasource

    return DjangoDatasource.create()


def counted(runs_file: str, body: Callable[[], Any]) -> Any:
    """``body()``, after noting in ``runs_file`` that the transaction function ran."""
    with open(runs_file, "a") as f:
        f.write("ran\n")
    return body()


def launch(sys_url: str, crash: bool) -> None:
    if crash:
        _crash_before_checkpoint(STEP_NAME)
    DBOS(config=DBOSConfig(name="ds-crash-app", system_database_url=sys_url, application_version="v1"))
    DBOS.launch()


def report(workflow_id: str, result: Any, counter: int) -> None:
    steps = [[s["function_id"], s["function_name"], s["output"]]
             for s in DBOS.list_workflow_steps(workflow_id)]
    print(f"RESULT {result}", flush=True)
    print(f"COUNTER {counter}", flush=True)
    print(f"STEPS {json.dumps(steps)}", flush=True)


def killed_too_late() -> None:
    print("NOT KILLED", flush=True)
    sys.exit(1)


# ----------------------------------------------------------------------
# The app, on a synchronous datasource
# ----------------------------------------------------------------------


def sync_app(sys_url: str, app_url: str, workflow_id: str, crash: bool, kind: str, runs_file: str) -> None:
    ds = make_datasource(kind, app_url)
    execute = EXECUTE[kind]

    def run(sql: str) -> Rows:
        return execute(ds.sql_session(), sql)

    @ds.transaction(name=STEP_NAME)
    def bump() -> int:
        return counted(runs_file, lambda: (run(BUMP), int(run(READ)[0][0]))[1])

    @DBOS.workflow()
    def count_once() -> int:
        return int(bump())

    ds.run_tx_step(None, run, COUNTER_TABLE)  # outside a workflow: a plain transaction
    launch(sys_url, crash)
    if crash:
        with SetWorkflowID(workflow_id):
            count_once()
        killed_too_late()
    result = DBOS.retrieve_workflow(workflow_id).get_result()  # recovered by launch()
    report(workflow_id, result, int(ds.run_tx_step(None, run, READ)[0][0]))
    DBOS.destroy()
    ds.close()


# ----------------------------------------------------------------------
# The app, on AsyncSQLAlchemyDatasource
# ----------------------------------------------------------------------


async def async_app(sys_url: str, app_url: str, workflow_id: str, crash: bool, runs_file: str) -> None:
    import sqlalchemy as sa

    from dbos import AsyncSQLAlchemyDatasource

    ads = await AsyncSQLAlchemyDatasource.create(app_url)

    async def run(sql: str) -> Rows:
        result = await ads.sql_session().execute(sa.text(sql))
        return [tuple(row) for row in result.fetchall()] if result.returns_rows else []

    @ads.transaction(name=STEP_NAME)
    async def bump() -> int:
        counted(runs_file, lambda: None)
        await run(BUMP)
        return int((await run(READ))[0][0])

    @DBOS.workflow()
    async def count_once() -> int:
        return int(await bump())

    await ads.run_tx_step_async(None, run, COUNTER_TABLE)
    launch(sys_url, crash)
    if crash:
        with SetWorkflowID(workflow_id):
            await count_once()
        killed_too_late()
    result = await (await DBOS.retrieve_workflow_async(workflow_id)).get_result()
    report(workflow_id, result, int((await ads.run_tx_step_async(None, run, READ))[0][0]))
    DBOS.destroy()
    await ads.close()


if __name__ == "__main__":
    sys_url, app_url, workflow_id, flag, kind, runs_file = sys.argv[1:7]
    if kind == "async_sqlalchemy":
        asyncio.run(async_app(sys_url, app_url, workflow_id, flag == "1", runs_file))
    else:
        sync_app(sys_url, app_url, workflow_id, flag == "1", kind, runs_file)
