"""``SQLDatasource``: ``transaction_outputs`` kept with a few plain SQL statements.

An adapter for another library (the Django ORM, SQLAlchemy, plain DB-API)
derives from it and only says how to open a transaction and how to run one
statement in it.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, List, Optional, Sequence, Tuple

from .._clock import now_ms
from .._sysdb.backend import MIGRATION_LOCK_KEY, PostgresBackend, SqliteBackend
from .interface import INDEX, ISOLATION_LEVELS, TABLE, Datasource, Dialect, Row
from .retries import is_retryable_error


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


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


def check_level(isolation_level: str) -> None:
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
