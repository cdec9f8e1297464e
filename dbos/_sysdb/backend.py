"""What differs between SQLite and PostgreSQL, and nothing else.

A ``Backend`` opens pooled Peewee databases, creates and drops the database
itself, runs migration scripts, serialises migrators, and recognises a lost
connection. The storage interface and the migration runner call only these
methods, so no dialect detail reaches the workflow engine.
"""

from __future__ import annotations

import os
import sqlite3
import time
from abc import ABC, abstractmethod
from contextlib import closing, contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, TypeVar

import peewee as pw
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

from .errors import PEEWEE_ERRORS, connecting, driver_error, postgres_disconnect, sqlite_busy, sqlstate
from .notifications import NOTIFY_CHANNEL
from .url import DatabaseURL

# The key DBOS Transact also uses, so its migrator and ours never overlap.
MIGRATION_LOCK_KEY = 1234567890
BUSY_TIMEOUT_MS = 30_000
T = TypeVar("T")


def until_not_busy(action: Callable[[], T]) -> T:
    """Run ``action``, retrying while SQLite reports the file locked.

    Changing a file's journal mode takes its exclusive lock without the busy
    handler, so processes opening one new file at once (one converting it to
    WAL, another setting the same pragma) get "database is locked" at once.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            return action()
        except (sqlite3.OperationalError, pw.OperationalError) as exc:
            if not sqlite_busy(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class PatientSqlitePool(PooledSqliteDatabase):  # type: ignore[misc]
    """A SQLite pool whose new connections wait out a journal-mode change."""

    def _connect(self) -> Any:
        return until_not_busy(super()._connect)

    def rollback(self) -> None:
        # SQLite rolls a transaction back by itself after some errors (a
        # full disk, an I/O error); a ROLLBACK then fails with "no transaction
        # is active", which would replace the error that says why.
        conn = None if self.is_closed() else self._state.conn
        if conn is not None and not conn.in_transaction:
            return
        super().rollback()


class Backend(ABC):
    """One kind of database server, addressed by one URL."""

    name: str
    placeholder: str  # the driver's parameter marker
    # Expressions that named statements write as {token} (see statements.py):
    #   arrival_order  orders notifications rows as they were inserted
    #   skip_locked    appended to a SELECT that claims rows other workers may hold
    #   unread         unread notifications, spelled as the partial index on
    #                  them is, so the planner uses it (SQLite matches the
    #                  index's WHERE term by term)
    #   notify_channel and attributes_match: PostgreSQL only
    statement_tokens: Dict[str, str]
    # Single statements may bypass Peewee's per-thread connection state.
    direct_statements: bool = False
    # Writes several threads wait on at once share one transaction (``grouping.py``).
    groups_commits: bool = False

    def __init__(self, url: DatabaseURL, schema: Optional[str]) -> None:
        self.url = url
        self.schema = schema

    @abstractmethod
    def open(self, pool_size: int, pool_timeout: float, connect_args: Dict[str, Any]) -> pw.Database:
        """A pooled Peewee database; each thread borrows a connection per operation."""

    @abstractmethod
    def database_exists(self) -> bool: ...

    @abstractmethod
    def create_database(self) -> None:
        """Create the database if it is missing; safe when others race to do it."""

    @abstractmethod
    def drop_database(self, own_tables: Sequence[str]) -> str:
        """Drop the database, or only ``own_tables`` where it also holds other
        data (an application sharing it): say which was done."""

    @abstractmethod
    def migration_lock(self, db: pw.Database) -> Any:
        """A context manager held while migrations are read and applied."""

    @abstractmethod
    def bootstrap_sql(self) -> List[str]:
        """Statements that create the schema and the version table if missing."""

    @abstractmethod
    def run_script(self, db: pw.Database, sql: str) -> None:
        """Execute a migration's statements inside the current transaction."""

    @abstractmethod
    def truncate(self, db: pw.Database, tables: Sequence[str]) -> None: ...

    @abstractmethod
    def is_disconnect(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the connection is gone and should be replaced."""

    def is_missing_database(self, exc: BaseException) -> bool:
        return False

    def mark_prepared(self, sql: str) -> None:
        """Prepare ``sql`` on each connection that runs it, where statements are prepared."""

    def close_pool(self, db: Any) -> None:
        """Close every pooled connection, even those a thread still holds."""
        db.close_all()

    # Expressions a shared migration names as {{token}}, in this dialect.
    sql_tokens: Dict[str, str] = {}

    def render_shared_sql(self, sql: str) -> str:
        """A migration written for every backend, in this backend's dialect."""
        for token, expression in self.sql_tokens.items():
            sql = sql.replace("{{" + token + "}}", expression)
        return sql

    def grant_sql(self, role: str) -> List[str]:
        """Statements giving ``role`` what the application needs; none for SQLite."""
        return []

    def limit_param(self, limit: Optional[int]) -> Optional[int]:
        """The value of a ``LIMIT :limit`` parameter; None (or 0) means no limit."""
        return limit or None

    def qualified(self, table: str) -> str:
        return f'"{self.schema}"."{table}"' if self.schema else f'"{table}"'

    def table_names(self, db: pw.Database) -> List[str]:
        names: List[str] = db.get_tables(schema=self.schema)
        return names


class _PooledPostgres(PooledPostgresqlDatabase):  # type: ignore[misc]
    """Peewee's pool, checking a connection out without a round trip.

    Peewee pings every connection it hands out (``SELECT 1``), which doubles
    the round trips of a one-statement operation. Here only the driver's local
    state is read; a connection the server dropped meanwhile fails its first
    statement instead, and ``SystemDatabase`` then empties the idle pool and
    retries on a fresh connection.
    """

    # psycopg2.extensions.TRANSACTION_STATUS_IDLE and _UNKNOWN
    _IDLE, _UNKNOWN = 0, 4

    def _is_closed(self, conn: Any) -> bool:
        if conn.closed:
            return True
        status = conn.get_transaction_status()
        if status == self._UNKNOWN:
            return True
        if status != self._IDLE:
            try:
                conn.rollback()
            except Exception:
                return True
        return False


class SqliteBackend(Backend):
    name = "sqlite"
    placeholder = "?"
    statement_tokens = {
        "arrival_order": "created_at_epoch_ms, rowid",
        # BEGIN IMMEDIATE already makes each claim the only writer.
        "skip_locked": "",
        "unread": "consumed = 0",
        # The database's clock, where processes on several machines must agree (heartbeats).
        "db_now_ms": "(CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))",
    }
    sql_tokens = {
        "now_ms": "(CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))",
        "random_id": "(lower(hex(randomblob(16))))",
        "boolean": "INTEGER",
    }
    # One writer per file and an fsync per commit: a group's one commit serves many threads.
    groups_commits = True
    direct_statements = True

    def __init__(self, url: DatabaseURL, schema: Optional[str] = None) -> None:
        super().__init__(url, None)

    @property
    def path(self) -> str:
        return self.url.sqlite_path

    def open(self, pool_size: int, pool_timeout: float, connect_args: Dict[str, Any]) -> pw.Database:
        return PatientSqlitePool(
            self.path,
            max_connections=pool_size,
            timeout=pool_timeout,
            lock_type="IMMEDIATE",
            check_same_thread=False,
            # journal_mode is a no-op once create_database has set WAL.
            pragmas={
                "busy_timeout": BUSY_TIMEOUT_MS,
                "journal_mode": "wal",
                "foreign_keys": 1,
                "synchronous": "full",
            },
            **connect_args,
        )

    def database_exists(self) -> bool:
        return os.path.exists(self.path)

    def create_database(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._switch_to_wal()

    def _switch_to_wal(self) -> None:
        """Put the file in WAL mode, which persists, before the pool opens it."""
        until_not_busy(self._set_wal)

    def _set_wal(self) -> None:
        with closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
            conn.execute("PRAGMA journal_mode = wal")

    def drop_database(self, own_tables: Sequence[str]) -> str:
        if self.database_exists() and self._others_tables(own_tables):
            self._drop_tables(own_tables)
            return "tables"
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.remove(self.path + suffix)
            except FileNotFoundError:
                pass
        return "database"

    def _others_tables(self, own_tables: Sequence[str]) -> List[str]:
        with closing(sqlite3.connect(self.path)) as conn:
            rows = conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            ).fetchall()
        return [r[0] for r in rows if r[0] not in own_tables]

    def _drop_tables(self, own_tables: Sequence[str]) -> None:
        with closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("BEGIN IMMEDIATE")
            for table in own_tables:
                conn.execute(f'DROP TABLE IF EXISTS "{table}"')
            conn.execute("COMMIT")

    @contextmanager
    def migration_lock(self, db: pw.Database) -> Iterator[None]:
        # Each migration takes SQLite's write lock (BEGIN IMMEDIATE) and
        # re-reads the version inside it, which is all the exclusion needed.
        yield

    def bootstrap_sql(self) -> List[str]:
        return ["CREATE TABLE IF NOT EXISTS dbos_migrations (version BIGINT NOT NULL PRIMARY KEY)"]

    def run_script(self, db: pw.Database, sql: str) -> None:
        cursor = db.cursor()
        for statement in split_sqlite_script(sql):
            with PEEWEE_ERRORS:
                cursor.execute(statement)

    def truncate(self, db: pw.Database, tables: Sequence[str]) -> None:
        for table in tables:
            db.execute_sql(f'DELETE FROM "{table}"')

    def limit_param(self, limit: Optional[int]) -> Optional[int]:
        # SQLite refuses LIMIT NULL; -1 means no limit.
        return limit or -1

    def is_disconnect(self, exc: BaseException) -> bool:
        # A SQLite file has no connection to lose.
        return False

    def close_pool(self, db: Any) -> None:
        # Closing a sqlite3 connection another thread is using can crash the
        # interpreter; a workflow thread still running at shutdown keeps its
        # connection, which closes with the process.
        db.close_idle()


def split_sqlite_script(sql: str) -> List[str]:
    """Complete statements of ``sql``, so triggers with inner ``;`` stay whole."""
    statements, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if _strip_comments(buffer):
        statements.append(buffer.strip())
    return statements


def _strip_comments(sql: str) -> str:
    return "\n".join(l for l in sql.splitlines() if not l.strip().startswith("--")).strip()


class PostgresBackend(Backend):
    name = "postgres"
    placeholder = "%s"
    statement_tokens = {
        "arrival_order": "seq",
        "skip_locked": " FOR UPDATE SKIP LOCKED",
        "unread": "NOT consumed",
        "notify_channel": NOTIFY_CHANNEL,
        # JSON containment; SQLite has no such test, and no such token.
        "attributes_match": "CAST(attributes AS JSONB) @> CAST(:attributes AS JSONB)",
        "db_now_ms": "((EXTRACT(EPOCH FROM clock_timestamp()) * 1000.0)::BIGINT)",
    }
    direct_statements = True
    sql_tokens = {
        "now_ms": "((EXTRACT(EPOCH FROM now()) * 1000.0)::BIGINT)",
        "random_id": "(gen_random_uuid()::TEXT)",
        "boolean": "BOOLEAN",
    }

    def open(self, pool_size: int, pool_timeout: float, connect_args: Dict[str, Any]) -> pw.Database:
        from .prepared import PreparingConnection

        kwargs = {"connection_factory": PreparingConnection, **self.url.connect_kwargs(), **connect_args}
        return _PooledPostgres(
            self.url.database,
            max_connections=pool_size,
            timeout=pool_timeout,
            autorollback=False,
            **kwargs,
        )

    def _maintenance_connection(self) -> Any:
        import psycopg2

        last: Optional[Exception] = None
        for dbname in ("postgres", "template1"):
            try:
                with connecting():
                    conn = psycopg2.connect(dbname=dbname, **self.url.connect_kwargs())
                conn.autocommit = True
                return conn
            except psycopg2.OperationalError as exc:
                last = exc
        assert last is not None
        raise last

    def database_exists(self) -> bool:
        """Whether the database exists, asking the maintenance database only if needed.

        An application role may connect to its own database but not to
        ``postgres`` or ``template1``; then connecting is the only way to know.
        """
        import psycopg2

        try:
            with connecting():
                psycopg2.connect(dbname=self.url.database, **self.url.connect_kwargs()).close()
            return True
        except psycopg2.OperationalError as exc:
            if self.is_missing_database(exc):
                return False
        return self._listed_in_pg_database()

    def _listed_in_pg_database(self) -> bool:
        conn = self._maintenance_connection()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.url.database,))
                return cur.fetchone() is not None
        finally:
            conn.close()

    def create_database(self) -> None:
        import psycopg2
        from psycopg2 import sql

        if self.database_exists():
            return
        conn = self._maintenance_connection()
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.url.database)))
        except (psycopg2.errors.DuplicateDatabase, psycopg2.errors.UniqueViolation):
            pass  # another process created it first
        finally:
            conn.close()

    def drop_database(self, own_tables: Sequence[str]) -> str:
        from psycopg2 import sql

        if self.database_exists() and self._holds_other_data():
            self._drop_schema()
            return "schema"
        conn = self._maintenance_connection()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(self.url.database)
                    )
                )
        finally:
            conn.close()
        return "database"

    def _own_connection(self) -> Any:
        import psycopg2

        with connecting():
            conn = psycopg2.connect(dbname=self.url.database, **self.url.connect_kwargs())
        conn.autocommit = True
        return conn

    def _holds_other_data(self) -> bool:
        """Whether tables outside our schema live here (an app sharing the database)."""
        with closing(self._own_connection()) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT 1 FROM information_schema.tables WHERE table_schema NOT IN "
                "(%s, 'pg_catalog', 'information_schema') LIMIT 1",
                (self.schema,),
            )
            return cur.fetchone() is not None

    def _drop_schema(self) -> None:
        with closing(self._own_connection()) as conn, conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    @contextmanager
    def migration_lock(self, db: pw.Database) -> Iterator[None]:
        db.execute_sql("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            yield
        finally:
            db.execute_sql("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))

    def bootstrap_sql(self) -> List[str]:
        return [
            f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"',
            f"CREATE TABLE IF NOT EXISTS {self.qualified('dbos_migrations')} "
            "(version BIGINT NOT NULL PRIMARY KEY)",
        ]

    def run_script(self, db: pw.Database, sql: str) -> None:
        cursor = db.cursor()
        with PEEWEE_ERRORS:
            cursor.execute(f'SET LOCAL search_path TO "{self.schema}", public')
            # No parameters, so the driver sends the script as written, '%' included.
            cursor.execute(sql)

    def truncate(self, db: pw.Database, tables: Sequence[str]) -> None:
        if tables:
            names = ", ".join(self.qualified(t) for t in tables)
            db.execute_sql(f"TRUNCATE TABLE {names} CASCADE")

    def is_disconnect(self, exc: BaseException) -> bool:
        return postgres_disconnect(exc)

    def mark_prepared(self, sql: str) -> None:
        from .prepared import preparable

        preparable(sql)

    def grant_sql(self, role: str) -> List[str]:
        schema, who = f'"{self.schema}"', '"' + role.replace('"', '""') + '"'
        return [
            f"GRANT USAGE ON SCHEMA {schema} TO {who}",
            f"GRANT ALL PRIVILEGES ON ALL TABLES IN SCHEMA {schema} TO {who}",
            f"GRANT ALL PRIVILEGES ON ALL SEQUENCES IN SCHEMA {schema} TO {who}",
            f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO {who}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT ALL ON TABLES TO {who}",
        ]

    def is_missing_database(self, exc: BaseException) -> bool:
        # libpq reports a refused connection as text only, without SQLSTATE
        # 3D000, so the message is the only sign when connecting.
        missing = f'database "{self.url.database}" does not exist'
        return sqlstate(exc) == "3D000" or missing in str(driver_error(exc))


def backend_for(url: DatabaseURL, schema: Optional[str] = "dbos") -> Backend:
    if url.is_sqlite:
        return SqliteBackend(url)
    return PostgresBackend(url, schema or "dbos")
