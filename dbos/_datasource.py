"""The application database, as ``@DBOS.transaction`` sees it.

A transaction function runs inside a transaction of the application's
database, and its serialized output is written to ``transaction_outputs`` in
that same transaction. A crash between that commit and the system-database
checkpoint therefore never runs the function twice: on replay the engine finds
the row here and returns it instead.

``Datasource`` is the whole contract the engine relies on. ``SQLDatasource``
keeps ``transaction_outputs`` with a few plain SQL statements, so an adapter
for another library (the Django ORM, SQLAlchemy) only says how to open a
transaction and how to run one statement in it. Two adapters live here:
``PeeweeDatasource`` (the default, on the user's Peewee database or one opened
from ``application_database_url``) and ``DBAPIDatasource`` (psycopg2/psycopg
or sqlite3 connections from a function the user supplies).
"""

from __future__ import annotations

import importlib.util
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import (
    Any,
    Callable,
    ContextManager,
    Dict,
    Iterator,
    List,
    Literal,
    Optional,
    Sequence,
    Tuple,
    Union,
    get_args,
)

import peewee as pw
from playhouse.pool import PooledDatabase

from .error import DBOSException
from ._sysdb.backend import MIGRATION_LOCK_KEY, PostgresBackend, SqliteBackend, backend_for
from ._sysdb.url import DatabaseURL

IsolationLevel = Literal["SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED"]
ISOLATION_LEVELS: Tuple[str, ...] = get_args(IsolationLevel)
Dialect = Literal["postgresql", "sqlite"]
Row = Tuple[Any, ...]

TABLE = "transaction_outputs"
INDEX = "transaction_outputs_created_at_index"
# How long a thread waits for a free connection of a pool opened from a URL.
POOL_TIMEOUT_S = 30.0


class Datasource(ABC):
    """The application's database as @DBOS.transaction sees it."""

    @abstractmethod
    def ensure_schema(self) -> None:
        """Create ``transaction_outputs`` if it is missing; safe to repeat and to race."""

    @abstractmethod
    def transaction(self, isolation_level: IsolationLevel) -> ContextManager[Any]:
        """A transaction at that level, yielding the session user code works with.

        Commits on normal exit; on an exception rolls back and re-raises it.
        """

    @abstractmethod
    def recorded_output(
        self, session: Any, workflow_id: str, function_id: int
    ) -> Optional[Tuple[Optional[str], Optional[str]]]:
        """The (output, error) text recorded for that step, or None."""

    @abstractmethod
    def record_output(
        self,
        session: Any,
        workflow_id: str,
        function_id: int,
        function_name: str,
        output: Optional[str],
        error: Optional[str],
        executor_id: Optional[str],
    ) -> None:
        """Record a step's outcome inside the session's current transaction."""

    @abstractmethod
    def is_retryable(self, exc: BaseException) -> bool:
        """Whether running the whole transaction again may well succeed."""

    def delete_outputs(self, workflow_ids: Sequence[str]) -> None:
        """Forget the recorded outputs of deleted workflows (none kept: nothing to do)."""

    def close(self) -> None:
        """Release the connections this datasource opened itself."""


# ----------------------------------------------------------------------
# Which failures are worth another attempt
# ----------------------------------------------------------------------

# Serialization failure and deadlock: the transaction lost a race with another
# one, and running it again is the documented cure.
_CONFLICT_STATES = frozenset({"40001", "40P01"})
# The server went away under us (restart, failover, terminated backend).
# Another attempt is safe even if a COMMIT's answer was lost: the retry first
# looks for the output that commit would have recorded.
_LOST_CONNECTION_STATES = frozenset({"57P01", "57P02", "57P03"})
_LOST_CONNECTION_TEXT = (
    "server closed the connection unexpectedly",
    "terminating connection",
    "connection already closed",
    "ssl connection has been closed unexpectedly",
)
# SQLITE_BUSY and SQLITE_LOCKED, the primary result codes of lock contention.
_SQLITE_CONTENTION_CODES = frozenset({5, 6})


def is_retryable_error(exc: BaseException) -> bool:
    """True for lock contention, serialization failures and lost connections.

    Looks through the wrappers ORMs put around driver errors (Peewee keeps
    the original in ``args[0]``, SQLAlchemy in ``orig``, Django in
    ``__cause__``), so every adapter can share this.
    """
    return any(_retryable_alone(error) for error in _error_chain(exc))


def _error_chain(exc: BaseException) -> List[BaseException]:
    chain: List[BaseException] = []
    current: Optional[BaseException] = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = _wrapped(current)
    return chain


def _wrapped(exc: BaseException) -> Optional[BaseException]:
    if isinstance(exc, pw.PeeweeException) and exc.args and isinstance(exc.args[0], BaseException):
        return exc.args[0]
    original = getattr(exc, "orig", None)
    if isinstance(original, BaseException):
        return original
    return exc.__cause__


def _retryable_alone(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        return _sqlite_contention(exc)
    # psycopg2 names the SQLSTATE pgcode, psycopg 3 names it sqlstate.
    state = getattr(exc, "pgcode", None) or getattr(exc, "sqlstate", None)
    if isinstance(state, str):
        return state in _CONFLICT_STATES or state in _LOST_CONNECTION_STATES or state.startswith("08")
    return _psycopg_lost_connection(exc)


def _sqlite_contention(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _SQLITE_CONTENTION_CODES  # extended codes keep the primary in the low byte
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _psycopg_lost_connection(exc: BaseException) -> bool:
    # A dropped connection often reaches the client with no SQLSTATE at all.
    if type(exc).__module__.split(".")[0] not in ("psycopg2", "psycopg"):
        return False
    text = str(exc).lower()
    return any(phrase in text for phrase in _LOST_CONNECTION_TEXT)


# ----------------------------------------------------------------------
# The SQL of transaction_outputs
# ----------------------------------------------------------------------


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def now_ms() -> int:
    return int(time.time() * 1000)


class OutputsSQL:
    """Every statement on ``transaction_outputs``, in one dialect and parameter style.

    The layout is DBOS Transact's, so an application database it created is
    used as is (and the one column it added later is added if missing).
    """

    def __init__(self, dialect: Dialect, schema: Optional[str], marker: str) -> None:
        self.dialect = dialect
        self.marker = marker
        # SQLite has no schemas: a plain table in the file.
        self.schema = schema if dialect == "postgresql" else None
        self.table = f"{_quote(self.schema)}.{_quote(TABLE)}" if self.schema else _quote(TABLE)

    def select(self) -> str:
        m = self.marker
        return f"SELECT output, error FROM {self.table} WHERE workflow_uuid = {m} AND function_id = {m}"

    def insert(self) -> str:
        """Parameters: workflow_uuid, function_id, function_name, output, error, executor_id, created_at."""
        markers = ", ".join([self.marker] * 6)
        return (
            f"INSERT INTO {self.table} (workflow_uuid, function_id, function_name, output, "
            f"error, executor_id, created_at, txn_id, txn_snapshot) VALUES ({markers}, {self.marker}, '', '')"
        )

    def columns(self) -> Tuple[str, Row]:
        """A query listing the table's column names (none if it does not exist)."""
        if self.dialect == "sqlite":
            return f"SELECT name FROM pragma_table_info({self.marker})", (TABLE,)
        return (
            "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = "
            f"to_regclass(CAST({self.marker} AS text)) AND attnum > 0 AND NOT attisdropped",
            (self.table,),
        )

    def creator_lock(self) -> Optional[str]:
        """Makes concurrent creators take turns; SQLite's write lock already does.

        The key is the migration lock's, so creating the schema never races a
        system-database migrator working in the same database either.
        """
        if self.dialect == "sqlite":
            return None
        return f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"

    def creation(self) -> List[str]:
        tokens = SqliteBackend.sql_tokens if self.dialect == "sqlite" else PostgresBackend.sql_tokens
        statements = [f"CREATE SCHEMA IF NOT EXISTS {_quote(self.schema)}"] if self.schema else []
        return statements + [
            f"CREATE TABLE IF NOT EXISTS {self.table} ("
            "workflow_uuid TEXT NOT NULL, function_id INTEGER NOT NULL, "
            "output TEXT, error TEXT, txn_id TEXT, txn_snapshot TEXT, executor_id TEXT, "
            "function_name TEXT NOT NULL DEFAULT '', "
            f"created_at BIGINT NOT NULL DEFAULT {tokens['now_ms']}, "
            "PRIMARY KEY (workflow_uuid, function_id))",
            f"CREATE INDEX IF NOT EXISTS {_quote(INDEX)} ON {self.table} (created_at)",
        ]

    def add_function_name(self) -> str:
        return f"ALTER TABLE {self.table} ADD COLUMN function_name TEXT NOT NULL DEFAULT ''"


def _check_level(isolation_level: str) -> None:
    if isolation_level not in ISOLATION_LEVELS:
        raise ValueError(
            f"unknown isolation level {isolation_level!r}: use one of {', '.join(ISOLATION_LEVELS)}"
        )


class SQLDatasource(Datasource):
    """A datasource that keeps ``transaction_outputs`` with ``OutputsSQL``.

    A subclass gives its dialect, how to open a transaction, and how to run
    one statement on the session that transaction yields.
    """

    schema: Optional[str] = "dbos"

    @property
    @abstractmethod
    def dialect(self) -> Dialect: ...

    @property
    def marker(self) -> str:
        """The driver's parameter marker (sqlite3: qmark; psycopg: format)."""
        return "?" if self.dialect == "sqlite" else "%s"

    @abstractmethod
    def _run(self, session: Any, sql: str, params: Sequence[Any] = ()) -> List[Row]:
        """Execute one statement in the session's transaction; its rows, if any."""

    @property
    def sql(self) -> OutputsSQL:
        return OutputsSQL(self.dialect, self.schema, self.marker)

    def ensure_schema(self) -> None:
        with self.transaction("READ COMMITTED") as session:
            # The usual case, checked first so a role that may not create
            # schemas can still use a database someone else prepared.
            if "function_name" not in self._columns(session):
                self._create(session)

    def _create(self, session: Any) -> None:
        lock = self.sql.creator_lock()
        if lock is not None:
            self._run(session, lock)
        for statement in self.sql.creation():
            self._run(session, statement)
        # A table from an older DBOS Transact lacks this column.
        if "function_name" not in self._columns(session):
            self._run(session, self.sql.add_function_name())

    def _columns(self, session: Any) -> List[str]:
        query, params = self.sql.columns()
        return [str(row[0]) for row in self._run(session, query, params)]

    def recorded_output(
        self, session: Any, workflow_id: str, function_id: int
    ) -> Optional[Tuple[Optional[str], Optional[str]]]:
        rows = self._run(session, self.sql.select(), (workflow_id, function_id))
        return (rows[0][0], rows[0][1]) if rows else None

    def record_output(
        self,
        session: Any,
        workflow_id: str,
        function_id: int,
        function_name: str,
        output: Optional[str],
        error: Optional[str],
        executor_id: Optional[str],
    ) -> None:
        params = (workflow_id, function_id, function_name, output, error, executor_id, now_ms())
        self._run(session, self.sql.insert(), params)

    def delete_outputs(self, workflow_ids: Sequence[str]) -> None:
        if not workflow_ids:
            return
        marks = ", ".join([self.marker] * len(workflow_ids))
        sql = f"DELETE FROM {self.sql.table} WHERE workflow_uuid IN ({marks})"
        with self.transaction("READ COMMITTED") as session:
            self._run(session, sql, tuple(workflow_ids))

    def is_retryable(self, exc: BaseException) -> bool:
        return is_retryable_error(exc)


# ----------------------------------------------------------------------
# Peewee
# ----------------------------------------------------------------------

PeeweeTarget = Union[pw.Database, pw.DatabaseProxy]


class PeeweeDatasource(SQLDatasource):
    """Transactions on the calling thread's connection of a Peewee database.

    User code inside the function uses its models as usual: they are bound to
    the same database, so their queries join this transaction (and their own
    ``atomic()`` blocks become savepoints in it).
    """

    def __init__(self, database: PeeweeTarget, *, schema: str = "dbos") -> None:
        self._target = database
        self.schema = schema
        self._owned = False
        if not isinstance(database, pw.DatabaseProxy):
            self.dialect  # reject an unsupported database now rather than at the first transaction

    @classmethod
    def from_url(cls, url: str, *, pool_size: int = 20) -> "PeeweeDatasource":
        """A pooled database at ``url``, created first if it does not exist."""
        backend = backend_for(DatabaseURL.parse(url))
        backend.create_database()  # PostgreSQL: CREATE DATABASE; SQLite: the file, in WAL mode
        source = cls(backend.open(pool_size, POOL_TIMEOUT_S, {}))
        source._owned = True
        return source

    @property
    def database(self) -> pw.Database:
        """The Peewee database (behind the proxy, if one was given)."""
        target = self._target
        if isinstance(target, pw.DatabaseProxy):
            if target.obj is None:
                raise DBOSException(
                    "The Peewee DatabaseProxy given to PeeweeDatasource is not initialized yet"
                )
            return target.obj
        return target

    @property
    def dialect(self) -> Dialect:
        db = self.database
        if isinstance(db, pw.SqliteDatabase):
            return "sqlite"
        if isinstance(db, pw.PostgresqlDatabase):
            return "postgresql"
        raise DBOSException(
            f"@DBOS.transaction supports SQLite and PostgreSQL databases, not {type(db).__name__}"
        )

    @contextmanager
    def transaction(self, isolation_level: IsolationLevel) -> Iterator[pw.Database]:
        _check_level(isolation_level)
        db = self.database
        if db.in_transaction():
            # Our COMMIT would only release a savepoint, and the output could
            # vanish with the outer transaction after the step is checkpointed.
            raise DBOSException(
                "A @DBOS.transaction cannot run inside a transaction already open on "
                "this thread's connection to the same database; call it outside that block"
            )
        with _peewee_connection(db), _peewee_transaction(db, self._begin_args(isolation_level)):
            yield db

    def _begin_args(self, isolation_level: IsolationLevel) -> Dict[str, str]:
        if self.dialect == "sqlite":
            # Take the write lock at BEGIN: a reader upgrading to writer later
            # can fail at once with "database is locked", busy timeout or not.
            return {"lock_type": "IMMEDIATE"}
        return {"isolation_level": isolation_level}

    def _run(self, session: Any, sql: str, params: Sequence[Any] = ()) -> List[Row]:
        cursor = session.execute_sql(sql, tuple(params))
        return [tuple(row) for row in cursor.fetchall()] if cursor.description else []

    def close(self) -> None:
        if not self._owned:
            return
        pool: Any = self.database
        if self.dialect == "sqlite":
            # Closing a sqlite3 connection another thread is still using (a
            # workflow mid-transaction at shutdown) can crash the interpreter;
            # such a connection closes with the process instead.
            pool.close_idle()
        else:
            pool.close_all()


@contextmanager
def _peewee_connection(db: pw.Database) -> Iterator[None]:
    """This thread's connection: borrowed for the block unless the caller holds one.

    Giving it back at the end is what leaves a pooled database with nothing
    checked out; a connection the user opened is theirs, and stays open.
    """
    opened = db.connect(reuse_if_open=True)
    try:
        yield
    finally:
        if opened and not db.is_closed():
            db.close()


@contextmanager
def _peewee_transaction(db: pw.Database, begin_args: Dict[str, str]) -> Iterator[None]:
    """A top-level Peewee transaction that always surfaces the first error.

    Peewee's own block raises the ROLLBACK's error instead when the
    connection is gone, which would hide, e.g., a lost connection or a
    serialization failure from ``is_retryable``.
    """
    txn = db.transaction(**begin_args)
    txn.__enter__()  # BEGIN, and on this thread's stack so user atomic() blocks nest
    try:
        yield
    except BaseException:
        _clear_stack(db)
        _rollback_quietly(db, txn)
        raise
    _clear_stack(db)
    try:
        txn.commit(begin=False)
    except BaseException:
        _rollback_quietly(db, txn)
        raise


def _clear_stack(db: pw.Database) -> None:
    # Ours is the bottom entry; anything above it was left by user code.
    while db.in_transaction():
        db.pop_transaction()


def _rollback_quietly(db: pw.Database, txn: Any) -> None:
    try:
        txn.rollback(begin=False)
    except Exception:
        # ROLLBACK fails only when the connection is broken, and then the
        # server has dropped the transaction anyway. Discard the connection so
        # the next attempt gets a fresh one; the caller sees the first error.
        _discard_connection(db)


def _discard_connection(db: pw.Database) -> None:
    try:
        if isinstance(db, PooledDatabase):
            db.manual_close()  # closed, not returned to the pool
        else:
            db.close()
    except Exception:
        pass  # already broken; closing it is only tidying up


# ----------------------------------------------------------------------
# Plain DB-API
# ----------------------------------------------------------------------


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
            raise ValueError(f"unsupported dialect {dialect!r}: use 'postgresql' or 'sqlite'")
        self._connect = connect
        self._dialect: Dialect = dialect
        self.schema = schema
        self._connections = ThreadConnections(self._open)

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
    def transaction(self, isolation_level: IsolationLevel) -> Iterator[Any]:
        _check_level(isolation_level)
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

    def count(self) -> int:
        with self._lock:
            return len(self._by_thread)

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


# ----------------------------------------------------------------------
# Choosing the application's datasource
# ----------------------------------------------------------------------

DATASOURCE_KINDS = ("peewee", "sqlalchemy")


def default_kind() -> str:
    """SQLAlchemy where it is installed: DBOS Transact programs (which always
    have it) then find ``DBOS.sql_session`` to be a SQLAlchemy session."""
    return "sqlalchemy" if importlib.util.find_spec("sqlalchemy") is not None else "peewee"


def datasource_from_config(choice: Any, url: Optional[str]) -> Tuple[Optional[Datasource], bool]:
    """The application datasource the configuration asks for, and whether DBOS
    opened it (and so closes it); a user's own datasource stays open."""
    if isinstance(choice, Datasource):
        return choice, False
    if url is None:
        return None, False
    if (choice or default_kind()) == "peewee":
        return PeeweeDatasource.from_url(url), True
    from .contrib.sqlalchemy import SQLAlchemyDatasource

    return SQLAlchemyDatasource.from_url(url), True

