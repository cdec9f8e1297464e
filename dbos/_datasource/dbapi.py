"""``DBAPIDatasource``: transactions on plain DB-API connections.

psycopg2/psycopg or sqlite3 connections, from a function the user supplies.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Literal, Optional, Sequence

from .._serialization import Serializer
from .._sysdb.backend import BUSY_TIMEOUT_MS, backend_for
from ..error import DBOSInvalidArgumentError
from .interface import Dialect, Row
from .levels import IsolationLevel
from .outputs import SQLDatasource
from .urls import parse_url


class DBAPIDatasource(SQLDatasource):
    """Transactions on DB-API connections made by the user's ``connect()``.

    The session handed to user code is the connection itself. The driver is
    put in autocommit mode and transactions are begun with explicit SQL, so
    the isolation level and SQLite's IMMEDIATE lock are ours to choose.
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        dialect: Literal["postgresql", "sqlite"],
        schema: str = "dbos",
    ) -> None:
        if dialect not in ("postgresql", "sqlite"):
            raise DBOSInvalidArgumentError("dialect", dialect, "use 'postgresql' or 'sqlite'")
        self._connect = connect
        self._dialect: Dialect = dialect
        self.schema = schema
        self._connections = ThreadConnections(self._open)

    @classmethod
    def create(cls, database_url: Optional[str] = None, *, connect: Optional[Callable[[], Any]] = None,
               dialect: Optional[Literal["postgresql", "sqlite"]] = None, schema: Optional[str] = None,
               serializer: Optional[Serializer] = None) -> "DBAPIDatasource":
        """A datasource for ``@ds.transaction()`` on plain DB-API connections: to
        ``database_url`` (sqlite3 or psycopg2; the database is created if missing),
        or made by your ``connect()`` for ``dialect``. Makes ``datasource_outputs``."""
        if (database_url is None) == (connect is None):
            raise DBOSInvalidArgumentError("database_url", database_url, "give a URL or connect=, not both")
        if database_url is not None:
            connect, dialect = _connector(database_url)
        if dialect is None:
            raise DBOSInvalidArgumentError("dialect", dialect, "with connect=, say 'postgresql' or 'sqlite'")
        assert connect is not None
        return cls(connect, dialect=dialect)._prepared(schema, serializer)

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    def _open(self) -> Any:
        conn = self._connect()
        conn.commit()  # whatever connect() ran (a SET, say) must not stay pending
        if self._dialect == "sqlite":
            conn.isolation_level = None  # sqlite3 then never issues BEGIN on its own
        else:
            conn.autocommit = True  # psycopg likewise
        return conn

    @contextmanager
    def _begin(self, isolation_level: IsolationLevel) -> Iterator[Any]:
        conn = self._connections.get()
        self._run(conn, self._begin_sql(isolation_level))  # a failed BEGIN leaves nothing to undo
        try:
            yield conn
            self._run(conn, "COMMIT")
        except BaseException:
            self._rollback(conn)
            raise

    def _begin_sql(self, isolation_level: IsolationLevel) -> str:
        if self._dialect == "sqlite":
            return "BEGIN IMMEDIATE"  # SQLite is always serializable; see PeeweeDatasource
        return f"BEGIN ISOLATION LEVEL {isolation_level}"

    def _rollback(self, conn: Any) -> None:
        try:
            if self._dialect == "sqlite":
                conn.rollback()  # a no-op when a failed COMMIT already ended the transaction
            else:
                self._run(conn, "ROLLBACK")  # rollback() does nothing in autocommit mode
        except Exception:
            self._connections.discard()  # broken: the next transaction reconnects

    def _run(self, session: Any, sql: str, params: Sequence[Any] = ()) -> List[Row]:
        cursor = session.cursor()
        try:
            # Without parameters, psycopg sends the text as is (no % escaping).
            if params:
                cursor.execute(sql, tuple(params))
            else:
                cursor.execute(sql)
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else []
        finally:
            cursor.close()

    def close(self) -> None:
        self._connections.close_all()


def _connector(database_url: str) -> "tuple[Callable[[], Any], Dialect]":
    parsed = parse_url(database_url)
    backend_for(parsed).create_database()
    if parsed.is_sqlite:
        import sqlite3

        return (lambda: sqlite3.connect(parsed.sqlite_path, timeout=BUSY_TIMEOUT_MS / 1000)), "sqlite"
    import psycopg2

    return (lambda: psycopg2.connect(dbname=parsed.database, **parsed.connect_kwargs())), "postgresql"


class ThreadConnections:
    """One connection per thread, kept between that thread's transactions.

    Per thread rather than a shared pool because sqlite3 connections, by
    default, refuse to be used from any thread but the one that made them.
    """

    def __init__(self, open_connection: Callable[[], Any]) -> None:
        self._open = open_connection
        self._lock = threading.Lock()
        self._by_thread: Dict[threading.Thread, Any] = {}

    def get(self) -> Any:
        me = threading.current_thread()
        with self._lock:
            conn = self._by_thread.get(me)
        if conn is not None and not getattr(conn, "closed", False):
            return conn
        self.discard()
        self._forget_finished_threads()
        conn = self._open()
        with self._lock:
            self._by_thread[me] = conn
        return conn

    def discard(self) -> None:
        """Close the calling thread's connection, if it has one."""
        with self._lock:
            conn = self._by_thread.pop(threading.current_thread(), None)
        _close_quietly(conn)

    def _forget_finished_threads(self) -> None:
        with self._lock:
            finished = [t for t in self._by_thread if not t.is_alive()]
            conns = [self._by_thread.pop(t) for t in finished]
        for conn in conns:
            _close_quietly(conn)

    def close_all(self) -> None:
        with self._lock:
            conns, self._by_thread = list(self._by_thread.values()), {}
        for conn in conns:
            _close_quietly(conn)


def _close_quietly(conn: Any) -> None:
    if conn is None:
        return
    try:
        conn.close()
    except Exception:
        # sqlite3 refuses a close from another thread; dropping the last
        # reference closes it when it is collected.
        pass
