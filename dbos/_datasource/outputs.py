"""``SQLDatasource``: the outputs table kept with a few plain SQL statements.

An adapter for another library (the Django ORM, SQLAlchemy, plain DB-API)
derives from it and only says how to open a transaction and how to run one
statement in it.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Callable, List, Optional, Sequence, Tuple

from .._clock import now_ms
from .._sysdb.backend import MIGRATION_LOCK_KEY, PostgresBackend, SqliteBackend
from .interface import Datasource, Dialect, Recorded, Row
from .retries import is_retryable_error
from .tables import Outcome, OutputsTable


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


# The driver's parameter marker for the i-th parameter (0-based) of a statement.
Marker = Callable[[int], str]


class OutputsSQL:
    """Every statement on one outputs table, in one dialect and parameter style."""

    def __init__(self, dialect: Dialect, schema: Optional[str], table: OutputsTable, mark: Marker) -> None:
        self.dialect = dialect
        self.layout = table
        self.mark = mark
        # SQLite has no schemas: a plain table in the file.
        self.schema = schema if dialect == "postgresql" else None
        self.table = f"{_quote(self.schema)}.{_quote(table.name)}" if self.schema else _quote(table.name)

    def _marks(self, count: int) -> str:
        return ", ".join(self.mark(i) for i in range(count))

    def select(self) -> str:
        t = self.layout
        return (f"SELECT output, error FROM {self.table} WHERE {t.workflow_column} = {self.mark(0)} "
                f"AND {t.step_column} = {self.mark(1)}")

    def insert(self) -> str:
        """Parameters: those of ``insert_params``."""
        columns = ", ".join(column for column, _ in self.layout.inserted)
        return f"INSERT INTO {self.table} ({columns}) VALUES ({self._marks(len(self.layout.inserted))})"

    def insert_params(self, outcome: Outcome) -> Row:
        values = {**outcome, "empty": "", "created_at": now_ms()}
        return tuple(values.get(key) for _, key in self.layout.inserted)

    def delete(self, count: int) -> str:
        return f"DELETE FROM {self.table} WHERE {self.layout.workflow_column} IN ({self._marks(count)})"

    def columns(self) -> Tuple[str, Row]:
        """A query listing the table's column names (none if it does not exist)."""
        if self.dialect == "sqlite":
            return f"SELECT name FROM pragma_table_info({self.mark(0)})", (self.layout.name,)
        return (
            "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = "
            f"to_regclass(CAST({self.mark(0)} AS text)) AND attnum > 0 AND NOT attisdropped",
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
        t = self.layout
        statements = [f"CREATE SCHEMA IF NOT EXISTS {_quote(self.schema)}"] if self.schema else []
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {self.table} ({t.workflow_column} TEXT NOT NULL, "
            f"{t.step_column} INTEGER NOT NULL, {t.columns_ddl.format(now_ms=tokens['now_ms'])}, "
            f"PRIMARY KEY ({t.workflow_column}, {t.step_column}))"
        )
        if t.index:
            statements.append(f"CREATE INDEX IF NOT EXISTS {_quote(t.index)} ON {self.table} (created_at)")
        return statements

    def add_late_column(self) -> Optional[str]:
        if self.layout.late_column is None:
            return None
        name, definition = self.layout.late_column
        return f"ALTER TABLE {self.table} ADD COLUMN {name} {definition}"


class SQLDatasource(Datasource):
    """A datasource that keeps its outputs table with ``OutputsSQL``.

    A subclass gives its dialect, how to open a transaction, and how to run
    one statement on the session that transaction yields.
    """

    @property
    @abstractmethod
    def dialect(self) -> Dialect: ...

    @property
    def marker(self) -> str:
        """The driver's parameter marker (sqlite3: qmark; psycopg: format)."""
        return "?" if self.dialect == "sqlite" else "%s"

    def mark(self, index: int) -> str:
        return self.marker

    @abstractmethod
    def _run(self, session: Any, sql: str, params: Sequence[Any] = ()) -> List[Row]:
        """Execute one statement in the session's transaction; its rows, if any."""

    @property
    def sql(self) -> OutputsSQL:
        return OutputsSQL(self.dialect, self.schema, self.outputs_table, self.mark)

    def ensure_schema(self) -> None:
        sql = self.sql
        with self._begin("READ COMMITTED") as session:
            # The usual case, checked first so a role that may not create
            # schemas can still use a database someone else prepared.
            if self.outputs_table.current_column not in self._columns(session, sql):
                self._create(session, sql)

    def _create(self, session: Any, sql: OutputsSQL) -> None:
        lock = sql.creator_lock()
        if lock is not None:
            self._run(session, lock)
        for statement in sql.creation():
            self._run(session, statement)
        # A table from an older DBOS Transact lacks a column.
        late = sql.add_late_column()
        if late is not None and self.outputs_table.current_column not in self._columns(session, sql):
            self._run(session, late)

    def _columns(self, session: Any, sql: OutputsSQL) -> List[str]:
        query, params = sql.columns()
        return [str(row[0]) for row in self._run(session, query, params)]

    def recorded_output(self, session: Any, workflow_id: str, step_id: int) -> Recorded:
        rows = self._run(session, self.sql.select(), (workflow_id, step_id))
        return (rows[0][0], rows[0][1]) if rows else None

    def record_output(self, session: Any, outcome: Outcome) -> None:
        sql = self.sql
        self._run(session, sql.insert(), sql.insert_params(outcome))

    def delete_outputs(self, workflow_ids: Sequence[str]) -> None:
        if not workflow_ids:
            return
        with self._begin("READ COMMITTED") as session:
            self._run(session, self.sql.delete(len(workflow_ids)), tuple(workflow_ids))

    def is_retryable(self, exc: BaseException) -> bool:
        return is_retryable_error(exc)
