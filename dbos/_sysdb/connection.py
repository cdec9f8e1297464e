"""Connections to the system database, and the running of named statements.

Each unit of work borrows a pooled connection for its own duration and
returns it, so a thread that ends never leaves a connection open. A
connection the server dropped is discarded and the work tried once more on a
fresh one. Driver errors leave this module as ``DBOSSystemDatabaseError``.

A statement outside any unit of work runs by itself, committed at once. On
PostgreSQL it takes a connection straight from the pool and puts it back,
without Peewee's per-thread connection state, which cost each statement more
Python time than sending it.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple, Type, TypeVar, Union

import peewee as pw
from playhouse.pool import MaxConnectionsExceeded

from ..error import DBOSSystemDatabaseError
from .backend import Backend, backend_for
from .errors import PEEWEE_ERRORS, driver_error
from .models import BoundModels
from .statements import Catalog, Statement
from .url import DatabaseURL

logger = logging.getLogger("dbos")
_peewee_log = logging.getLogger("peewee")

T = TypeVar("T")
Row = Tuple[Any, ...]

# The system tables, as statements name them: {workflow_status} and so on.
TABLES = (
    "workflow_status", "operation_outputs", "notifications", "workflow_events",
    "workflow_events_history", "streams", "application_versions", "queues", "workflow_schedules",
    "dbos_migrations",
)


def _first(cursor: Any) -> Optional[Row]:
    row: Optional[Row] = cursor.fetchone()
    return row


def _all(cursor: Any) -> List[Row]:
    rows: List[Row] = cursor.fetchall()
    return rows


def _rowcount(cursor: Any) -> int:
    return int(cursor.rowcount or 0)


def _records(cursor: Any) -> List[Dict[str, Any]]:
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


class Connection:
    """A pool of connections to one system database, and its named statements."""

    def __init__(
        self,
        url: Union[str, DatabaseURL],
        *,
        schema: Optional[str] = "dbos",
        pool_size: int = 20,
        pool_timeout: float = 30.0,
        connect_args: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.url = DatabaseURL.parse(url) if isinstance(url, str) else url
        self.backend: Backend = backend_for(self.url, schema)
        # A Peewee pooled database: Database plus the pool's methods.
        self._db: Any = self.backend.open(pool_size, pool_timeout, dict(connect_args or {}))
        # The direct path uses the pool's internals, so a Peewee without them
        # (older than the 4.x we test) keeps the ordinary path.
        self._direct = self.backend.direct_statements and all(
            hasattr(self._db, name) for name in ("_connect", "_close", "_pool_available", "_wait_timeout"))
        self.models = BoundModels(self._db, self.backend.schema)
        tables = {table: self.backend.qualified(table) for table in TABLES}
        self.sql = Catalog({**tables, **self.backend.statement_tokens}, self.backend.placeholder)
        self._compiled = self.sql.compiled
        # The SQL of statements already marked as worth preparing.
        self._marked: Set[str] = set()

    @property
    def database(self) -> Any:
        """The pooled Peewee database, for what runs on it directly (migrations, DDL)."""
        return self._db

    @property
    def schema(self) -> Optional[str]:
        return self.backend.schema

    @property
    def is_sqlite(self) -> bool:
        return self.url.is_sqlite

    # ------------------------------------------------------------------
    # Named statements
    # ------------------------------------------------------------------

    def one(self, statement: Statement, **params: Any) -> Optional[Row]:
        """The first row of ``statement`` (None if it returned none)."""
        return self._send(statement, params, _first)

    def rows(self, statement: Statement, **params: Any) -> List[Row]:
        """Every row of ``statement``."""
        return self._send(statement, params, _all)

    def records(self, statement: Statement, **params: Any) -> List[Dict[str, Any]]:
        """The rows of ``statement`` as dicts keyed by column name."""
        return self._send(statement, params, _records)

    def rowcount(self, statement: Statement, **params: Any) -> int:
        """How many rows ``statement`` changed."""
        return self._send(statement, params, _rowcount)

    def _send(self, statement: Statement, params: Dict[str, Any], read: Callable[[Any], T]) -> T:
        compiled = self._compiled.get(statement) or self.sql.compile(statement)
        sql, values = compiled.bind(params)
        if compiled.prepare and sql not in self._marked and compiled.worth_preparing(params):
            self._marked.add(sql)
            self.backend.mark_prepared(sql)
        return self.statement(sql, values, read)

    def notify(self, keys: Sequence[str]) -> None:
        """Tell other processes about ``keys`` when the unit of work at hand
        commits. Nothing to tell here: processes sharing a SQLite file poll."""

    # ------------------------------------------------------------------
    # Units of work
    # ------------------------------------------------------------------

    def attempts(self, *, transaction: bool = True) -> Iterator["Attempt"]:
        """The tries of one unit of work; run its body ``with`` each in turn::

            for attempt in sysdb.attempts():
                with attempt:      # one connection, in one transaction
                    result = ...
            return result

        Statements in the body join the unit of work. A try ends early only
        when the connection is lost: the next one starts on a fresh
        connection. A second loss, or any other driver error, is raised as
        ``DBOSSystemDatabaseError``. What the body computes, it assigns; it
        is there after the loop, once a try has completed.
        """
        for number in (1, 2):
            attempt = Attempt(self, transaction, last=number == 2)
            yield attempt
            if attempt.done:
                return
            logger.warning(f"Lost the connection to {self.url}; reconnecting")

    def run(self, work: Callable[[], T], *, transaction: bool = True) -> T:
        """``work()`` as one unit of work (see ``attempts``)."""
        if not transaction:
            return self._pooled(work)
        for attempt in self.attempts(transaction=transaction):
            with attempt:
                result = work()
        return result

    # ------------------------------------------------------------------
    # Sending SQL
    # ------------------------------------------------------------------

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement on this thread's connection; only inside a unit of work."""
        return self._db.execute_sql(sql, params)

    def statement(self, sql: str, params: Sequence[Any], read: Callable[[Any], T]) -> T:
        """Run one statement, committed by itself, and ``read`` its cursor.

        Inside a unit of work it joins that connection like ``execute``.
        """
        if not self._db._state.closed:  # in a unit of work, which wraps what this raises
            return read(self.execute(sql, params))
        if self._direct:
            return self._direct_statement(sql, params, read)
        return self._pooled(lambda: read(self.execute(sql, params)))

    def _pooled(self, work: Callable[[], T]) -> T:
        """``work()`` as a unit of work without a transaction."""
        for attempt in self.attempts(transaction=False):
            with attempt:
                result = work()
        return result

    def _direct_statement(self, sql: str, params: Sequence[Any], read: Callable[[Any], T]) -> T:
        for attempt in (1, 2):
            conn = self._checkout()
            try:
                with PEEWEE_ERRORS:
                    result = read(self.execute_on(conn, sql, params))
            except pw.PeeweeException as exc:
                if not self.backend.is_disconnect(exc):
                    self._db._close(conn)
                    raise self._wrap(exc) from exc
                # As in ``Attempt._lost``: the idle ones were likely dropped too.
                self._db._close(conn, close_conn=True)
                self._db.close_idle()
                if attempt == 2:
                    raise self._wrap(exc) from exc
                logger.warning(f"Lost the connection to {self.url}; reconnecting")
                continue
            except BaseException:
                self._db._close(conn)
                raise
            self._db._close(conn)
            return result
        raise AssertionError("unreachable")

    def execute_on(self, conn: Any, sql: str, params: Sequence[Any]) -> Any:
        """Send one statement on a connection ``statement`` checked out."""
        if _peewee_log.isEnabledFor(logging.DEBUG):
            _peewee_log.debug((sql, params))
        cursor = conn.cursor()
        cursor.execute(sql, params)
        return cursor

    def _checkout(self) -> Any:
        """A connection from the pool, waiting as Peewee's ``connect`` would when none is free."""
        try:
            with PEEWEE_ERRORS:
                return self._db._connect()
        except MaxConnectionsExceeded as exc:
            return self._wait_for_connection(exc)
        except pw.PeeweeException as exc:
            raise self._wrap(exc) from exc

    def _wait_for_connection(self, exc: MaxConnectionsExceeded) -> Any:
        db = self._db
        if not db._wait_timeout:
            raise self._wrap(exc) from exc
        deadline = time.monotonic() + db._wait_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                full = MaxConnectionsExceeded("Max connections exceeded, timed out attempting to connect.")
                raise self._wrap(full) from exc
            with db._pool_available:
                db._pool_available.wait(timeout=min(remaining, 1.0))
            try:
                with PEEWEE_ERRORS:
                    return db._connect()
            except MaxConnectionsExceeded:
                continue
            except pw.PeeweeException as error:
                raise self._wrap(error) from error

    # ------------------------------------------------------------------
    # Errors
    # ------------------------------------------------------------------

    def _wrap(self, exc: BaseException) -> DBOSSystemDatabaseError:
        inner = driver_error(exc)
        detail = " ".join(str(inner).split()).rstrip(".?!") or type(inner).__name__
        if isinstance(exc, MaxConnectionsExceeded):
            return DBOSSystemDatabaseError(
                f"No free connection to the system database at {self.url}: {detail}. "
                "Raise sys_db_pool_size or use fewer threads at once."
            )
        if self.backend.is_disconnect(exc) or isinstance(inner, pw.OperationalError):
            return DBOSSystemDatabaseError(
                f"Cannot use the system database at {self.url}: {detail}. "
                "Check that the database server is running and that the URL, "
                "user and password are right."
            )
        return DBOSSystemDatabaseError(f"System database error on {self.url}: {detail}")

    @contextmanager
    def wrapped_errors(self) -> Iterator[None]:
        """Errors of the block raised as ``DBOSSystemDatabaseError`` (for work
        done outside a unit of work: creating or dropping the database)."""
        try:
            yield
        except DBOSSystemDatabaseError:
            raise
        except Exception as exc:
            raise self._wrap(exc) from exc

    def close(self) -> None:
        """Close the pooled connections; a later operation opens new ones."""
        self._db.close()
        self.backend.close_pool(self._db)


class Attempt:
    """One try of a unit of work (see ``Connection.attempts``).

    It borrows this thread's connection unless an outer unit of work holds
    it, in which case it joins that one and leaves losses to the outer one.
    """

    def __init__(self, owner: Connection, transaction: bool, last: bool) -> None:
        self._owner = owner
        self._transaction = transaction
        self._last = last
        self._borrowed = False
        self._atomic: Any = None
        self.done = False

    def __enter__(self) -> None:
        db = self._owner._db
        try:
            if db.is_closed():
                db.connect()
                self._borrowed = True
            if self._transaction:
                atomic = db.atomic()
                atomic.__enter__()
                self._atomic = atomic
        except (pw.PeeweeException, MaxConnectionsExceeded) as exc:
            self._give_back()
            raise self._owner._wrap(exc) from exc

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> bool:
        failure = exc
        try:
            if self._atomic is not None:
                self._atomic.__exit__(exc_type, exc, tb)  # commit, or roll back
        except BaseException as ending:
            failure = ending
        if self._borrowed and self._lost(failure):
            if self._last:
                raise self._owner._wrap(failure) from failure  # type: ignore[arg-type]
            return True  # the next attempt starts on a fresh connection
        self._give_back()
        if isinstance(failure, (pw.PeeweeException, MaxConnectionsExceeded)):
            raise self._owner._wrap(failure) from failure
        if failure is not exc:
            raise failure  # type: ignore[misc]
        self.done = exc_type is None
        return False

    def _lost(self, failure: Optional[BaseException]) -> bool:
        """Whether ``failure`` is a dropped connection; if so, drop it and
        the idle ones with it (they were likely dropped too, and are not
        pinged when checked out), so the retry connects anew."""
        # A lost connection shows as pw.OperationalError, or as
        # pw.InterfaceError when the transaction's ROLLBACK finds it closed.
        if not isinstance(failure, pw.PeeweeException) or not self._owner.backend.is_disconnect(failure):
            return False
        db = self._owner._db
        db.manual_close()
        db.close_idle()
        return True

    def _give_back(self) -> None:
        db = self._owner._db
        if self._borrowed and not db.is_closed():
            db.close()
