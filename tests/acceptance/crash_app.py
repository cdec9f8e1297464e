"""A small durable app that the acceptance tests run in child processes and kill.

    python crash_app.py steps     SYS_URL COUNT_FILE WORKFLOW_ID BLOCK_AT
    python crash_app.py txn       SYS_URL APP_URL    WORKFLOW_ID CRASH(0|1) [KIND]

Every step appends its number to COUNT_FILE, outside the system database, so
the test can count executions. With BLOCK_AT=k the process prints
"IN_STEP k" and hangs inside step k, for the parent to SIGKILL it. In the
txn mode with CRASH=1 the process kills itself right after the transaction
commits and before its checkpoint is written. KIND is the application
datasource: peewee (the default; a Peewee model), dbapi (DBAPIDatasource over
sqlite3 or psycopg2) or sqlalchemy (``DBOS.sql_session``); each bumps the same
``counter`` table.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any, Dict

import peewee as pw

from dbos import DBOS, DBOSConfig

STEPS = 5


def steps_app(sys_url: str, count_file: str, workflow_id: str, block_at: int) -> None:
    @DBOS.step()
    def work(n: int) -> int:
        with open(count_file, "a") as f:
            f.write(f"{n}\n")
        if n == block_at:
            print(f"IN_STEP {n}", flush=True)
            threading.Event().wait()  # hang here until killed
        return n * n

    @DBOS.workflow()
    def squares() -> int:
        return sum(work(n) for n in range(1, STEPS + 1))

    DBOS(config=DBOSConfig(name="crash-app", system_database_url=sys_url,
                           application_version="v1"))
    DBOS.launch()
    from dbos import SetWorkflowID

    if block_at:
        with SetWorkflowID(workflow_id):
            squares()
    else:
        # The relaunch recovers the workflow by itself; wait for its outcome.
        print(f"RESULT {DBOS.retrieve_workflow(workflow_id).get_result()}", flush=True)
    DBOS.destroy()


class Counter(pw.Model):
    name = pw.TextField(primary_key=True)
    value = pw.IntegerField()


COUNTER_TABLE = "CREATE TABLE IF NOT EXISTS counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL)"
# Valid on SQLite and PostgreSQL alike.
BUMP = ("INSERT INTO counter (name, value) VALUES ('hits', 1) "
        "ON CONFLICT (name) DO UPDATE SET value = counter.value + 1")
READ = "SELECT value FROM counter WHERE name = 'hits'"


def peewee_bump() -> int:
    Counter.insert(name="hits", value=1).on_conflict(
        conflict_target=[Counter.name], update={Counter.value: Counter.value + 1}
    ).execute()
    return int(Counter.get_by_id("hits").value)


def dbapi_bump() -> int:
    cursor = DBOS.sql_session.cursor()  # the DB-API connection itself
    cursor.execute(BUMP)
    cursor.execute(READ)
    return int(cursor.fetchone()[0])


def sqlalchemy_bump() -> int:
    import sqlalchemy as sa

    DBOS.sql_session.execute(sa.text(BUMP))
    return int(DBOS.sql_session.execute(sa.text(READ)).scalar_one())


def datasource_config(kind: str, app_url: str) -> Dict[str, Any]:
    """The configuration keys that give the application datasource of that kind."""
    if kind == "peewee":
        return {"application_database_url": app_url, "application_datasource": "peewee"}
    if kind == "sqlalchemy":
        return {"application_database_url": app_url, "application_datasource": "sqlalchemy"}
    from dbos import DBAPIDatasource
    from dbos._sysdb.backend import backend_for
    from dbos._sysdb.url import DatabaseURL

    parsed = DatabaseURL.parse(app_url)
    backend_for(parsed).create_database()
    if parsed.is_sqlite:
        import sqlite3

        return {"application_datasource": DBAPIDatasource(
            lambda: sqlite3.connect(parsed.sqlite_path, timeout=30), dialect="sqlite")}
    import psycopg2

    return {"application_datasource": DBAPIDatasource(
        lambda: psycopg2.connect(dbname=parsed.database, **parsed.connect_kwargs()),
        dialect="postgresql")}


def create_counter_table(kind: str) -> None:
    if kind == "peewee":
        Counter.bind(DBOS.app_datasource.database)
        DBOS.app_datasource.database.create_tables([Counter], safe=True)
    elif kind == "sqlalchemy":
        import sqlalchemy as sa

        with DBOS.app_datasource.engine.begin() as conn:
            conn.execute(sa.text(COUNTER_TABLE))
    else:
        with DBOS.app_datasource.begin("READ COMMITTED") as conn:
            conn.cursor().execute(COUNTER_TABLE)


def read_counter(kind: str) -> int:
    if kind == "peewee":
        return int(Counter.get_by_id("hits").value)
    if kind == "sqlalchemy":
        import sqlalchemy as sa

        with DBOS.app_datasource.engine.connect() as conn:
            return int(conn.execute(sa.text(READ)).scalar_one())
    with DBOS.app_datasource.begin("READ COMMITTED") as conn:
        cursor = conn.cursor()
        cursor.execute(READ)
        return int(cursor.fetchone()[0])


BUMPS = {"peewee": peewee_bump, "dbapi": dbapi_bump, "sqlalchemy": sqlalchemy_bump}


def txn_app(sys_url: str, app_url: str, workflow_id: str, crash: bool, kind: str) -> None:
    bump = DBOS.transaction(name="bump")(BUMPS[kind])

    @DBOS.workflow()
    def count_once() -> int:
        return bump()

    if crash:
        _crash_before_checkpoint("bump")
    DBOS(config=DBOSConfig(name="crash-app", system_database_url=sys_url,
                           application_version="v1", **datasource_config(kind, app_url)))
    DBOS.launch()
    create_counter_table(kind)
    if crash:
        from dbos import SetWorkflowID

        with SetWorkflowID(workflow_id):
            count_once()
    else:
        print(f"RESULT {DBOS.retrieve_workflow(workflow_id).get_result()}", flush=True)
        print(f"COUNTER {read_counter(kind)}", flush=True)
    DBOS.destroy()


def _crash_before_checkpoint(function_name: str) -> None:
    """Die by SIGKILL between the transaction's commit and its checkpoint."""
    from dbos._sysdb.steps import StepRows

    original = StepRows.record_step

    def record_step(self: StepRows, step: object) -> str:
        if str(getattr(step, "function_name", "")).endswith(function_name):
            print("COMMITTED", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, step)  # type: ignore[arg-type]

    StepRows.record_step = record_step  # type: ignore[method-assign]


if __name__ == "__main__":
    mode, sys_url, second, workflow_id, flag = sys.argv[1:6]
    if mode == "steps":
        steps_app(sys_url, second, workflow_id, int(flag))
    else:
        txn_app(sys_url, second, workflow_id, flag == "1", sys.argv[6] if len(sys.argv) > 6 else "peewee")
