"""@DBOS.transaction against a real application database.

Most tests run twice: with the Peewee datasource DBOS opens from
``application_database_url`` and with a ``DBAPIDatasource`` the application
passes as ``application_datasource`` (psycopg2 or sqlite3 connections). The
application database is SQLite or PostgreSQL to match ``--backend``. What was
committed is always read back through a separate plain connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import peewee as pw
import psycopg2
import pytest

from tests.probe import drop_database, driver_connection

from dbos import DBAPIDatasource, DBOS, DBOSConfig, SetWorkflowID
from dbos.error import DBOSException, DBOSSerializationError
from dbos._engine.registry import TEMP_PREFIX
from dbos._sysdb.backend import backend_for
from dbos._sysdb.url import DatabaseURL
from tests.conftest import postgres_url
from tests.integration.sysdb_sql import (
    WAIT_S,
    delete_step,
    loaded_error,
    loaded_output,
    recover,
    status_row,
    step_rows,
    sys_sql,
    wait_for_launch_recovery,
)

Row = Tuple[Any, ...]


class FatalError(Exception):
    """Raised by test transactions; module level, so it pickles."""


# ----------------------------------------------------------------------
# The application database and a plain observer of what it committed
# ----------------------------------------------------------------------


@pytest.fixture
def app_db_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """An application database on the chosen backend, created, with an ``items`` table."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'app.sqlite'}"
    else:
        url = postgres_url(f"dbos_app_{uuid.uuid4().hex[:12]}")
    backend_for(DatabaseURL.parse(url)).create_database()
    observe(url, "CREATE TABLE items (name TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    yield url
    drop_database(url)



def connect(url: str) -> Any:
    return driver_connection(url, WAIT_S)


def observe(url: str, sql: str, params: Sequence[Any] = ()) -> List[Row]:
    conn = connect(url)
    try:
        return run_sql(conn, url.startswith("sqlite"), sql, params)
    finally:
        conn.close()


def run_sql(session: Any, sqlite: bool, sql: str, params: Sequence[Any] = ()) -> List[Row]:
    """Run ``?``-marked SQL on a Peewee database or a DB-API connection."""
    text = sql if sqlite else sql.replace("?", "%s")
    if isinstance(session, pw.Database):
        cursor = session.execute_sql(text, tuple(params))
    else:
        cursor = session.cursor()
        cursor.execute(text, tuple(params))
    return [tuple(r) for r in cursor.fetchall()] if cursor.description else []


def outputs_table(url: str) -> str:
    return "transaction_outputs" if url.startswith("sqlite") else "dbos.transaction_outputs"


def recorded(url: str, workflow_id: str) -> List[Row]:
    """(function_id, function_name, output, error) rows of transaction_outputs."""
    return observe(
        url,
        f"SELECT function_id, function_name, output, error FROM {outputs_table(url)} "
        "WHERE workflow_uuid = ? ORDER BY function_id",
        (workflow_id,),
    )


def items(url: str) -> List[Row]:
    return observe(url, "SELECT name, n FROM items ORDER BY name")


# ----------------------------------------------------------------------
# DBOS launched with each kind of datasource
# ----------------------------------------------------------------------


@dataclass
class App:
    kind: str
    url: str

    @property
    def sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    def sql(self, sql: str, params: Sequence[Any] = ()) -> List[Row]:
        """SQL on the running transaction's session (``DBOS.sql_session``)."""
        return run_sql(DBOS.sql_session, self.sqlite, sql, params)


def dbapi_datasource(url: str) -> DBAPIDatasource:
    parsed = DatabaseURL.parse(url)
    if parsed.is_sqlite:
        return DBAPIDatasource(lambda: sqlite3.connect(parsed.sqlite_path, timeout=WAIT_S),
                               dialect="sqlite")
    return DBAPIDatasource(
        lambda: psycopg2.connect(dbname=parsed.database, **parsed.connect_kwargs()),
        dialect="postgresql",
    )


@pytest.fixture(params=["peewee", "dbapi"])
def app(request: pytest.FixtureRequest, config: DBOSConfig, app_db_url: str) -> Iterator[App]:
    datasource: Optional[DBAPIDatasource] = None
    if request.param == "peewee":
        config["application_database_url"] = app_db_url
        config["application_datasource"] = "peewee"
    else:
        datasource = dbapi_datasource(app_db_url)
        config["application_datasource"] = datasource
    DBOS(config=config)
    DBOS.launch()
    wait_for_launch_recovery()
    yield App(str(request.param), app_db_url)
    DBOS.destroy(destroy_registry=True)
    if datasource is not None:
        datasource.close()  # the application's own datasource: DBOS leaves it open


# ----------------------------------------------------------------------
# Exactly once
# ----------------------------------------------------------------------


def test_writes_and_output_commit_together(app: App) -> None:
    runs: List[str] = []

    @DBOS.transaction()
    def insert(name: str, n: int) -> Dict[str, Any]:
        runs.append(name)
        assert DBOS.workflow_id == "txn-ok" and DBOS.step_id == 1
        app.sql("INSERT INTO items (name, n) VALUES (?, ?)", (name, n))
        [(total,)] = app.sql("SELECT SUM(n) FROM items")
        return {"name": name, "total": int(total)}

    @DBOS.workflow()
    def wf() -> Dict[str, Any]:
        return insert("a", 7)

    with SetWorkflowID("txn-ok"):
        assert wf() == {"name": "a", "total": 7}
    assert items(app.url) == [("a", 7)]
    [(fid, fname, output, error)] = recorded(app.url, "txn-ok")
    assert (fid, fname, error) == (1, insert.__qualname__, None)
    assert loaded_output(output) == {"name": "a", "total": 7}
    [step] = step_rows("txn-ok")
    assert step[1] == insert.__qualname__ and loaded_output(step[2]) == {"name": "a", "total": 7}

    assert recover("txn-ok") == {"name": "a", "total": 7}  # replayed from operation_outputs
    assert runs == ["a"]


def test_unserializable_output_rolls_back_the_writes(app: App) -> None:
    @DBOS.transaction()
    def insert_and_return_a_lock() -> Any:
        app.sql("INSERT INTO items (name, n) VALUES (?, ?)", ("lock", 1))
        return threading.Lock()

    @DBOS.workflow()
    def wf() -> Any:
        return insert_and_return_a_lock()

    with SetWorkflowID("txn-unserializable"), pytest.raises(DBOSSerializationError):
        wf()
    assert items(app.url) == []
    [(_, _, output, error)] = recorded(app.url, "txn-unserializable")
    assert output is None and isinstance(loaded_error(error), DBOSSerializationError)


def test_replay_from_transaction_outputs_does_not_run_again(app: App) -> None:
    runs: List[int] = []

    @DBOS.transaction()
    def insert_once(n: int) -> int:
        runs.append(n)
        app.sql("INSERT INTO items (name, n) VALUES (?, ?)", ("once", n))
        return n * 10

    @DBOS.workflow()
    def wf() -> int:
        return insert_once(3) + 1

    with SetWorkflowID("txn-crash"):
        assert wf() == 31
    # As if the process died after the commit, before the step checkpoint.
    delete_step("txn-crash", 1)
    assert recover("txn-crash") == 31
    assert runs == [3]
    assert items(app.url) == [("once", 3)]
    [step] = step_rows("txn-crash")  # the checkpoint is written on the replay
    assert loaded_output(step[2]) == 30


def test_error_rolls_back_the_writes_and_is_recorded(app: App) -> None:
    runs: List[int] = []

    @DBOS.transaction()
    def insert_then_fail() -> None:
        runs.append(1)
        app.sql("INSERT INTO items (name, n) VALUES (?, ?)", ("doomed", 1))
        raise FatalError("after the insert")

    @DBOS.workflow()
    def wf() -> str:
        try:
            insert_then_fail()
        except FatalError as exc:
            return f"caught: {exc}"
        return "no error"

    with SetWorkflowID("txn-error"):
        assert wf() == "caught: after the insert"
    assert items(app.url) == []
    [step] = step_rows("txn-error")
    assert isinstance(loaded_error(step[3]), FatalError)
    [(_, _, output, error)] = recorded(app.url, "txn-error")
    assert output is None and isinstance(loaded_error(error), FatalError)

    # Even without the checkpoint, the replay raises the recorded error unrun.
    delete_step("txn-error", 1)
    assert recover("txn-error") == "caught: after the insert"
    assert runs == [1]


def test_error_fails_a_workflow_that_does_not_catch_it(app: App) -> None:
    @DBOS.transaction()
    def fail() -> None:
        raise FatalError("boom")

    @DBOS.workflow()
    def wf() -> None:
        fail()

    with SetWorkflowID("txn-wf-error"), pytest.raises(FatalError):
        wf()
    assert status_row("txn-wf-error")["status"] == "ERROR"
    with pytest.raises(FatalError, match="boom"):
        DBOS.retrieve_workflow("txn-wf-error").get_result()


def test_transaction_in_an_async_workflow(app: App) -> None:
    @DBOS.transaction()
    def insert(name: str) -> int:
        app.sql("INSERT INTO items (name, n) VALUES (?, ?)", (name, 1))
        [(count,)] = app.sql("SELECT COUNT(*) FROM items")
        return int(count)

    @DBOS.workflow()
    async def wf() -> int:
        await asyncio.sleep(0)
        return insert("a") + insert("b")

    async def main() -> int:
        with SetWorkflowID("txn-async"):
            return await wf()

    assert asyncio.run(main()) == 3
    assert [r[0] for r in recorded(app.url, "txn-async")] == [1, 2]
    assert items(app.url) == [("a", 1), ("b", 1)]


def test_peewee_models_join_the_transaction(app: App) -> None:
    if app.kind != "peewee":
        pytest.skip("Peewee models need the Peewee datasource")

    class Item(pw.Model):
        name = pw.TextField(primary_key=True)
        n = pw.IntegerField()

        class Meta:
            table_name = "items"

    Item.bind(DBOS.app_datasource.database)

    @DBOS.transaction()
    def add(name: str, fail: bool) -> int:
        Item.create(name=name, n=len(name))
        if fail:
            raise FatalError(name)
        return int(Item.select().count())

    @DBOS.workflow()
    def wf() -> int:
        try:
            add("dropped", True)
        except FatalError:
            pass
        return add("kept", False)

    assert wf() == 1
    assert items(app.url) == [("kept", 4)]


# ----------------------------------------------------------------------
# Isolation and serialization failures (PostgreSQL)
# ----------------------------------------------------------------------


def test_isolation_level_is_applied(app: App) -> None:
    if app.sqlite:
        pytest.skip("SQLite transactions are always serializable")

    def show() -> str:
        [(level,)] = app.sql("SHOW transaction_isolation")
        return str(level)

    serializable = DBOS.transaction()(show)
    repeatable = DBOS.transaction("REPEATABLE READ", name="repeatable")(show)
    committed = DBOS.transaction("READ COMMITTED", name="committed")(show)

    @DBOS.workflow()
    def wf() -> List[str]:
        return [serializable(), repeatable(), committed()]

    assert wf() == ["serializable", "repeatable read", "read committed"]


def test_serialization_failure_is_retried_until_it_commits(app: App) -> None:
    if app.sqlite:
        pytest.skip("SQLite takes the write lock at BEGIN, so it has no serialization failures")
    both_read = threading.Barrier(2, timeout=WAIT_S)
    attempts: Dict[str, int] = {"x": 0, "y": 0}

    @DBOS.transaction()  # SERIALIZABLE
    def count_then_insert(name: str) -> int:
        attempts[name] += 1
        [(seen,)] = app.sql("SELECT COUNT(*) FROM items")
        if attempts[name] == 1:
            both_read.wait()  # each has read what the other is about to write
        app.sql("INSERT INTO items (name, n) VALUES (?, ?)", (name, seen))
        return int(seen)

    @DBOS.workflow()
    def wf(name: str) -> int:
        return count_then_insert(name)

    handles = [DBOS.start_workflow(wf, name) for name in ("x", "y")]
    results = sorted(h.get_result() for h in handles)
    # Serializable: one of them must have seen the other's row.
    assert results == [0, 1]
    assert sorted(n for _, n in items(app.url)) == [0, 1]
    assert sum(attempts.values()) >= 3 and max(attempts.values()) >= 2
    for handle in handles:
        assert status_row(handle.workflow_id)["status"] == "SUCCESS"


# ----------------------------------------------------------------------
# Where a transaction may be called
# ----------------------------------------------------------------------


def test_transaction_outside_a_workflow_runs_as_a_temp_workflow(app: App) -> None:
    @DBOS.transaction()
    def insert(name: str) -> str:
        assert DBOS.workflow_id is not None
        app.sql("INSERT INTO items (name, n) VALUES (?, ?)", (name, 0))
        return name.upper()

    assert insert("temp") == "TEMP"
    assert items(app.url) == [("temp", 0)]
    rows = sys_sql("SELECT workflow_uuid, status FROM {status} WHERE name = ?",
                   (TEMP_PREFIX + insert.__qualname__,))
    assert len(rows) == 1 and rows[0][1] == "SUCCESS"
    [(fid, _, output, _)] = recorded(app.url, rows[0][0])
    assert fid == 1 and loaded_output(output) == "TEMP"


def test_transaction_called_inside_a_step_raises(app: App) -> None:
    @DBOS.transaction()
    def insert() -> None:
        app.sql("INSERT INTO items (name, n) VALUES (?, ?)", ("from-step", 0))

    @DBOS.step()
    def step() -> None:
        insert()

    @DBOS.workflow()
    def wf() -> None:
        step()

    with pytest.raises(AssertionError, match="within workflows"):
        wf()
    assert items(app.url) == []


def test_sql_session_only_inside_a_transaction(app: App) -> None:
    @DBOS.step()
    def step() -> str:
        with pytest.raises(AssertionError):
            DBOS.sql_session
        return "step"

    @DBOS.transaction()
    def txn() -> bool:
        return DBOS.sql_session is not None

    @DBOS.workflow()
    def wf() -> Tuple[str, bool]:
        with pytest.raises(AssertionError):
            DBOS.sql_session
        return step(), txn()

    with pytest.raises(AssertionError, match="transaction"):
        DBOS.sql_session
    assert wf() == ("step", True)


# ----------------------------------------------------------------------
# Without an application database; async functions
# ----------------------------------------------------------------------


def test_transaction_without_an_application_database_raises(dbos: type[DBOS]) -> None:
    runs: List[int] = []

    @DBOS.transaction()
    def txn() -> None:
        runs.append(1)

    @DBOS.workflow()
    def wf() -> None:
        txn()

    with pytest.raises(DBOSException, match="application_database_url"):
        wf()
    with pytest.raises(DBOSException, match="application_database_url"):
        txn()
    assert runs == []
    with pytest.raises(DBOSException, match="No application database"):
        DBOS.app_datasource


def test_async_function_is_rejected_at_decoration() -> None:
    async def not_allowed() -> None:
        await asyncio.sleep(0)

    with pytest.raises(DBOSException, match="async"):
        DBOS.transaction()(not_allowed)
