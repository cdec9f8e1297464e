"""Driver errors classified by code and worded for the user, with errors that
real SQLite files (and a refused TCP port) raise, not hand-built ones, except
for PostgreSQL codes that only a broken server gives."""

from __future__ import annotations

import logging
import pickle
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any, Callable

import psycopg2
import pytest
from playhouse.pool import MaxConnectionsExceeded

from dbos._sysdb import errors
from dbos._sysdb.backend import PatientSqlitePool
from dbos._sysdb.failures import describe_failure, operation_of
from dbos._sysdb.outage import OutageTracker, is_outage
from dbos._sysdb.url import DatabaseURL
from dbos.error import (
    DBOSDatabaseAuthenticationError,
    DBOSDatabaseBusyError,
    DBOSDatabaseConnectionError,
    DBOSDiskFullError,
    DBOSReadOnlyDatabaseError,
    DBOSSystemDatabaseError,
    DBOSTooManyConnectionsError,
)

SQLITE_URL = DatabaseURL.parse("sqlite:///app/system.sqlite")


def raised(action: Callable[[], Any]) -> BaseException:
    try:
        action()
    except BaseException as exc:
        return exc
    raise AssertionError("nothing raised")


def fresh_file(tmp_path: Path) -> str:
    path = str(tmp_path / "f.sqlite")
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE t (x TEXT)")
        conn.commit()
    return path


def full_disk_error(tmp_path: Path) -> BaseException:
    """SQLITE_FULL, from a file whose page limit is reached."""
    conn = sqlite3.connect(fresh_file(tmp_path), isolation_level=None)
    conn.execute("PRAGMA max_page_count = 3")
    return raised(lambda: [conn.execute("INSERT INTO t VALUES (?)", ("x" * 4000,)) for _ in range(10)])


def test_a_full_sqlite_file_is_disk_full_and_an_outage(tmp_path: Path) -> None:
    exc = full_disk_error(tmp_path)
    assert errors.failure_kind(exc) == errors.DISK_FULL and errors.disk_full(exc) and is_outage(exc)
    failure = describe_failure(SQLITE_URL, operation_of('INSERT INTO "operation_outputs" (x) VALUES (?)'), exc)
    assert isinstance(failure, DBOSDiskFullError)
    assert str(failure).startswith("DBOS Error 40: The system database at sqlite:///app/system.sqlite "
                                   "failed while writing operation_outputs: disk full")
    assert "Free space" in str(failure)


def test_a_read_only_sqlite_file(tmp_path: Path) -> None:
    conn = sqlite3.connect(f"file:{fresh_file(tmp_path)}?mode=ro", uri=True)
    exc = raised(lambda: conn.execute("INSERT INTO t VALUES ('x')"))
    assert errors.failure_kind(exc) == errors.READ_ONLY and not is_outage(exc)
    failure = describe_failure(SQLITE_URL, "writing t", exc)
    assert isinstance(failure, DBOSReadOnlyDatabaseError) and "read-only" in str(failure)


def test_sqlite_cannot_open_busy_and_not_a_database(tmp_path: Path) -> None:
    missing = raised(lambda: sqlite3.connect(str(tmp_path / "no" / "such" / "dir.sqlite")))
    assert errors.failure_kind(missing) == errors.CANNOT_CONNECT
    assert isinstance(describe_failure(SQLITE_URL, "connecting", missing), DBOSDatabaseConnectionError)
    path = fresh_file(tmp_path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    busy = raised(lambda: other.execute("BEGIN IMMEDIATE"))
    assert errors.failure_kind(busy) == errors.LOCK_TIMEOUT and is_outage(busy)
    assert isinstance(describe_failure(SQLITE_URL, "writing t", busy), DBOSDatabaseBusyError)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all, but long enough to have a header" * 20)
    notadb = raised(lambda: sqlite3.connect(str(junk)).execute("SELECT * FROM sqlite_master"))
    assert errors.failure_kind(notadb) == errors.NOT_A_DATABASE
    assert "not a database" in str(describe_failure(SQLITE_URL, "reading t", notadb))


def test_a_refused_port_is_told_by_where_it_failed() -> None:
    def connect() -> None:
        with errors.connecting():
            psycopg2.connect(host="127.0.0.1", port=1, user="postgres", password="s3cret", dbname="x")

    exc = raised(connect)
    assert errors.sqlstate(exc) is None  # libpq gives no SQLSTATE when it cannot connect
    assert errors.failure_kind(exc) == errors.CANNOT_CONNECT and is_outage(exc)
    url = DatabaseURL.parse("postgresql://postgres:s3cret@127.0.0.1:1/x")
    failure = describe_failure(url, "connecting", exc)
    assert isinstance(failure, DBOSDatabaseConnectionError)
    assert "postgres:***@127.0.0.1:1/x failed while connecting: no connection could be opened" in str(failure)
    assert "s3cret" not in str(failure) and "server is running" in str(failure)
    # Raised anywhere else, the same error (no code) is a connection lost.
    bare = raised(lambda: psycopg2.connect(host="127.0.0.1", port=1, user="postgres", dbname="x"))
    assert errors.failure_kind(bare) == errors.CONNECTION_LOST


class Coded(Exception):
    """A PostgreSQL error with a SQLSTATE only a broken server gives (psycopg2's own classes carry
    no code unless the server sent one)."""

    def __init__(self, pgcode: str) -> None:
        super().__init__(f"server said {pgcode}")
        self.pgcode = pgcode


@pytest.mark.parametrize("code, kind, error", [
    ("53100", errors.DISK_FULL, DBOSDiskFullError),
    ("25006", errors.READ_ONLY, DBOSReadOnlyDatabaseError),
    ("53300", errors.TOO_MANY_CONNECTIONS, DBOSTooManyConnectionsError),
    ("28P01", errors.AUTHENTICATION, DBOSDatabaseAuthenticationError),
    ("28000", errors.AUTHENTICATION, DBOSDatabaseAuthenticationError),
    ("55P03", errors.LOCK_TIMEOUT, DBOSDatabaseBusyError),
    ("08006", errors.CONNECTION_LOST, DBOSDatabaseConnectionError),
    ("57P01", errors.CONNECTION_LOST, DBOSDatabaseConnectionError),
    ("42601", errors.OTHER, DBOSSystemDatabaseError),
])
def test_postgres_codes(code: str, kind: str, error: type) -> None:
    exc = Coded(code)
    assert errors.failure_kind(exc) == kind
    failure = describe_failure(DatabaseURL.parse("postgresql://u:pw@h/db"), "reading queues", exc)
    assert type(failure) is error and f"server said {code}" in str(failure) and ":pw@" not in str(failure)
    assert pickle.loads(pickle.dumps(failure)).message == failure.message


def test_an_exhausted_pool() -> None:
    exc = MaxConnectionsExceeded("Max connections exceeded, timed out attempting to connect.")
    failure = describe_failure(SQLITE_URL, "waiting for a pooled connection", exc)
    assert isinstance(failure, DBOSTooManyConnectionsError) and "sys_db_pool_size" in str(failure)


@pytest.mark.parametrize("sql, words", [
    ('INSERT INTO "dbos"."workflow_status" (a) VALUES (%s)', "writing workflow_status"),
    ("SELECT output FROM operation_outputs WHERE workflow_uuid = ?", "reading operation_outputs"),
    ('UPDATE "dbos"."queues" SET x = 1', "updating queues"),
    ("DELETE FROM notifications WHERE 1", "deleting from notifications"),
    ("COMMIT", "committing a transaction"),
    ("GRANT USAGE ON SCHEMA dbos TO app", "running GRANT"),
    (None, "running a statement"),
])
def test_operation_words(sql: Any, words: str) -> None:
    assert operation_of(sql) == words


def test_a_failed_rollback_does_not_hide_the_error(tmp_path: Path) -> None:
    """SQLite may roll a transaction back itself after a full disk; the pool's
    ROLLBACK then does nothing, and the full disk is what is raised."""
    db = PatientSqlitePool(fresh_file(tmp_path), max_connections=1, pragmas={"max_page_count": 3})

    def write() -> None:
        with db.atomic():
            for _ in range(10):
                db.execute_sql("INSERT INTO t VALUES (?)", ("x" * 4000,))

    db.connect()
    try:
        exc = raised(write)
        assert errors.failure_kind(exc) == errors.DISK_FULL
    finally:
        db.close()


def test_a_disk_full_outage_ends_on_a_write_not_a_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tracker = OutageTracker("sqlite:///x")
    full = full_disk_error(tmp_path)
    with caplog.at_level(logging.INFO, logger="dbos"):
        tracker.failed(full, again=True)
        tracker.succeeded(retried=False)  # a read: the disk is still full
        assert tracker.active
        tracker.succeeded(retried=True)  # a write that had failed went through
        assert not tracker.active
        tracker.failed(Coded("57P01"), again=True)
        tracker.succeeded(retried=False)  # any answer ends a lost connection
        assert not tracker.active
    said = [r.getMessage() for r in caplog.records if r.name == "dbos"]
    assert [("unavailable" in m, "is back after" in m) for m in said] == [(True, False), (False, True)] * 2
