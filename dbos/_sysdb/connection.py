"""Connections to the system database, and the running of named statements.

Each unit of work borrows a pooled connection for its own duration and
returns it, so a thread that ends never leaves a connection open. When the
database is away (``outage.py``: a dropped connection, a server restarting,
a SQLite file locked or full) the connection is discarded and the work tried
again after a pause, until the database is back, unless the call starts new
work (see ``outage.py``). Other driver errors leave this module as
``DBOSSystemDatabaseError`` at once.

A statement outside any unit of work runs by itself, committed at once. On
PostgreSQL it takes a connection straight from the pool and puts it back,
without Peewee's per-thread connection state, which cost each statement more
Python time than sending it.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Callable, Dict, Iterator, List, NoReturn, Optional, Sequence, Set, Tuple, Type, TypeVar, Union

import peewee as pw
from playhouse.pool import MaxConnectionsExceeded

from ..error import DBOSSystemDatabaseError
from .backend import Backend, backend_for
from .errors import PEEWEE_ERRORS, at_connect, connecting, disk_full, is_driver_error
from .failures import describe_failure, operation_of
from .grouping import Group, Write
from .models import BoundModels
from .outage import BACKOFF_CAP_SEC, NEW_WORK_LIMIT_SEC, Backoff, OutageTracker, is_outage, starting_new_work
from .statements import Catalog, Statement, all_rows, first_row, row_count, row_records
from .tries import begin_try, count_retry, end_try
from .url import DatabaseURL

logger = logging.getLogger("dbos")
_peewee_log = logging.getLogger("peewee")

T = TypeVar("T")
Row = Tuple[Any, ...]

# The SQL this context sent last, so an error can say what it was doing.
_sending: ContextVar[Optional[str]] = ContextVar("dbos_sysdb_sending", default=None)
# A caller's own DB-API connection (``DBOSClient.*_in_transaction``): while
# set, statements run there, in the caller's transaction, which the caller
# commits or rolls back; nothing is retried, since the transaction is not ours.
_foreign: ContextVar[Optional[Any]] = ContextVar("dbos_sysdb_foreign", default=None)
# The keys notified in the outermost unit of work at hand, and its connection,
# which announces them once that unit of work commits.
_held: ContextVar[Optional[Tuple[Any, List[str]]]] = ContextVar("dbos_sysdb_held", default=None)


# The system tables, as statements name them: {workflow_status} and so on.
TABLES = (
    "workflow_status", "operation_outputs", "notifications", "workflow_events",
    "workflow_events_history", "streams", "application_versions", "queues", "workflow_schedules",
    "executors", "dbos_migrations",
)


class _Lost(Exception):
    """One try met an outage; its connection is already discarded."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


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
        bounded: bool = False,
        new_work_limit: float = NEW_WORK_LIMIT_SEC,
        backoff_cap: float = BACKOFF_CAP_SEC,
    ) -> None:
        self.url = DatabaseURL.parse(url) if isinstance(url, str) else url
        # Every call is new work (a client's), or only what runs in ``new_work()``.
        self.bounded = bounded
        self.new_work_limit = new_work_limit
        self.backoff_cap = backoff_cap
        self.outage = OutageTracker(str(self.url))
        # Until a connection has once been opened, an outage is a wrong URL or
        # a server not running, and fails at once.
        self._reached = False
        # ``close`` wakes and ends the pauses of retries begun before it.
        self._closing = threading.Event()
        self._closings = 0
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
        # SQLite's group commit (``grouping.py``); None where each write commits by itself.
        self._group = Group(self) if self.backend.groups_commits else None

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
        return self._send(statement, params, first_row)

    def rows(self, statement: Statement, **params: Any) -> List[Row]:
        """Every row of ``statement``."""
        return self._send(statement, params, all_rows)

    def records(self, statement: Statement, **params: Any) -> List[Dict[str, Any]]:
        """The rows of ``statement`` as dicts keyed by column name."""
        return self._send(statement, params, row_records)

    def rowcount(self, statement: Statement, **params: Any) -> int:
        """How many rows ``statement`` changed."""
        return self._send(statement, params, row_count)

    def grouped_one(self, statement: Statement, **params: Any) -> Optional[Row]:
        """``one`` for a write others may wait on at once: on SQLite, committed with theirs (``grouping.py``)."""
        return self._send(statement, params, first_row, grouped=True)

    def grouped_rowcount(self, statement: Statement, **params: Any) -> int:
        """``rowcount`` for a write, grouped as ``grouped_one``."""
        return self._send(statement, params, row_count, grouped=True)

    def group_commit_counts(self) -> Tuple[int, int]:
        """(writes, commits) of the grouped writes so far; (0, 0) where none are grouped."""
        return (0, 0) if self._group is None else self._group.counts()

    def _send(self, statement: Statement, params: Dict[str, Any], read: Callable[[Any], T],
              grouped: bool = False) -> T:
        compiled = self._compiled.get(statement) or self.sql.compile(statement)
        sql, values = compiled.bind(params)
        if compiled.prepare and sql not in self._marked and compiled.worth_preparing(params):
            self._marked.add(sql)
            self.backend.mark_prepared(sql)
        # Not in a unit of work (nor a caller's transaction): its transaction is its own.
        if grouped and self._group is not None and self._db._state.closed and _foreign.get() is None:
            return self._group.run(Write(sql, values, read))
        return self.statement(sql, values, read)

    # Whether notified keys are held until the unit of work commits, then
    # ``announce``d (SQLite's doorbell); a backend whose notification is part
    # of the transaction says False and skips the holding on every unit of work.
    announces_after_commit = True

    def notify(self, keys: Sequence[str]) -> None:
        """Tell other processes about ``keys`` when the unit of work at hand
        commits (``announce``). Outside one of ours (a caller's transaction)
        they are not told: their waiters find the write at their next poll."""
        held = _held.get()
        if held is not None and held[0] is self:
            held[1].extend(keys)

    def announce(self, keys: Sequence[str]) -> None:
        """Tell other processes about ``keys``, just committed (SQLite's doorbell)."""

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
        when the database is away (``outage.py``); the next one starts on a
        fresh connection after a pause. Any other driver error is raised as
        ``DBOSSystemDatabaseError``. What the body computes, it assigns; it
        is there after the loop, once a try has completed. A body may run
        more than once, also after a COMMIT whose outcome the lost
        connection hid: what it writes must be safe to write again.
        """
        if _foreign.get() is not None:
            yield _Joined()  # type: ignore[misc]
            return
        outer = _held.get()
        # PostgreSQL's NOTIFY travels with the COMMIT itself: nothing to hold.
        if not self.announces_after_commit or (outer is not None and outer[0] is self):
            yield from self._tries(transaction, None)
            return
        held: List[str] = []
        token = _held.set((self, held))
        try:
            yield from self._tries(transaction, held)
        finally:
            _held.reset(token)
        if held:
            self.announce(held)

    def _tries(self, transaction: bool, held: Optional[List[str]]) -> Iterator["Attempt"]:
        backoff: Optional[Backoff] = None
        while True:
            attempt = Attempt(self, transaction)
            failure = attempt.open()
            if failure is None:
                if held:
                    held.clear()  # a try lost to an outage: the next notifies again
                token = begin_try(backoff is not None)
                try:
                    yield attempt
                finally:
                    end_try(token)
                if attempt.done:
                    self.outage.succeeded(retried=backoff is not None)
                    return
                failure = attempt.lost
            backoff = backoff or Backoff(self.backoff_cap, self._closings)
            self._pause(failure, backoff)

    def statement_once(self, sql: str, params: Sequence[Any], read: Callable[[Any], T]) -> Tuple[bool, Optional[T]]:
        """``statement`` outside a unit of work, tried once: (False, None) if an outage lost it."""
        if not self._direct:
            box: List[T] = []
            done = self.once(lambda: box.append(read(self.execute(sql, params))), transaction=False)
            return done, (box[0] if done else None)
        try:
            return True, self._direct_once(sql, params, read)
        except _Lost:
            return False, None

    def once(self, work: Callable[[], None], *, transaction: bool = True) -> bool:
        """``work()`` as a unit of work, tried once: False if an outage lost it (rolled back)."""
        attempt = Attempt(self, transaction)
        if attempt.open() is None:
            with attempt:
                work()
        if attempt.done:
            self.outage.succeeded(retried=False)
        return attempt.done

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
        foreign = _foreign.get()
        if foreign is not None:
            return self.execute_on(foreign, sql, params)
        _sending.set(sql)
        return self._db.execute_sql(sql, params)

    def statement(self, sql: str, params: Sequence[Any], read: Callable[[Any], T]) -> T:
        """Run one statement, committed by itself, and ``read`` its cursor.

        Inside a unit of work it joins that connection like ``execute``; on a
        caller's connection (``on_connection``) it runs there.
        """
        foreign = _foreign.get()
        if foreign is not None:
            return self._foreign_statement(foreign, sql, params, read)
        if not self._db._state.closed:  # in a unit of work, which wraps what this raises
            return read(self.execute(sql, params))
        if self._direct:
            return self._direct_statement(sql, params, read)
        return self._pooled(lambda: read(self.execute(sql, params)))

    @contextmanager
    def on_connection(self, dbapi_connection: Any) -> Iterator[None]:
        """Run the block's statements on the caller's own connection to this
        database, inside the caller's transaction (never committed here)."""
        token = _foreign.set(dbapi_connection)
        try:
            yield
        finally:
            _foreign.reset(token)

    def _foreign_statement(self, conn: Any, sql: str, params: Sequence[Any], read: Callable[[Any], T]) -> T:
        try:
            return read(self.execute_on(conn, sql, params))
        except Exception as exc:
            if is_driver_error(exc):
                self._fail(exc)
            raise

    def _pooled(self, work: Callable[[], T]) -> T:
        """``work()`` as a unit of work without a transaction."""
        for attempt in self.attempts(transaction=False):
            with attempt:
                result = work()
        return result

    def _direct_statement(self, sql: str, params: Sequence[Any], read: Callable[[Any], T]) -> T:
        backoff: Optional[Backoff] = None
        while True:
            try:
                result = self._direct_once(sql, params, read)
            except _Lost as lost:
                backoff = backoff or Backoff(self.backoff_cap, self._closings)
                self._pause(lost.cause, backoff)
                continue
            self.outage.succeeded(retried=backoff is not None)
            return result

    def _direct_once(self, sql: str, params: Sequence[Any], read: Callable[[Any], T]) -> T:
        conn = self._checkout()
        try:
            with PEEWEE_ERRORS:
                result = read(self.execute_on(conn, sql, params))
        except pw.PeeweeException as exc:
            if not self.is_outage(exc):
                self._db._close(conn)
                self._fail(exc)
            # As in ``Attempt._discard``: the idle ones were likely dropped too.
            self._db._close(conn, close_conn=True)
            self._db.close_idle()
            raise _Lost(exc) from exc
        except BaseException:
            self._db._close(conn)
            raise
        self._db._close(conn)
        return result

    def is_outage(self, exc: BaseException) -> bool:
        """Whether ``exc`` says this database is away for now (``outage.py``);
        a database dropped under us is not coming back."""
        return is_outage(exc) and not self.backend.is_missing_database(exc)

    def _pause(self, failure: Optional[BaseException], backoff: Backoff) -> None:
        """Wait before the next try after ``failure``, an outage; or raise it
        when this call may not wait (see ``outage.py``)."""
        assert failure is not None
        if not self._reached or self._closings != backoff.generation:
            self._fail(failure)
        self.outage.failed(failure, again=backoff.tries > 0)
        count_retry()
        delay = backoff.next()
        if self.bounded or starting_new_work():
            self._give_up_on_new_work(failure, backoff)
            delay = min(delay, max(0.0, self.new_work_limit - backoff.elapsed()))
        if self._closing.wait(delay):
            self._fail(failure)

    def _give_up_on_new_work(self, failure: BaseException, backoff: Backoff) -> None:
        """Raise for a call starting new work once the outage has lasted
        ``new_work_limit``; on a full disk, at once."""
        # A full disk fails new work at once: space comes back only when
        # someone frees it, which may take far longer than a caller should
        # hold its thread (a web request, say), and nothing of the new work
        # is written yet, so the caller can simply try again. Work already
        # under way waits instead: failing it would lose nothing, but leave
        # it PENDING until the next recovery.
        if disk_full(failure):
            self._fail(failure)
        if backoff.elapsed() >= self.new_work_limit:
            cause = self._wrap(failure)
            raise type(cause)(f"Gave up starting new work after waiting {backoff.elapsed():.0f} s for the "
                              f"system database to come back: {cause.message}") from failure

    def execute_on(self, conn: Any, sql: str, params: Sequence[Any]) -> Any:
        """Send one statement on a connection ``statement`` checked out."""
        if _peewee_log.isEnabledFor(logging.DEBUG):
            _peewee_log.debug((sql, params))
        _sending.set(sql)
        cursor = conn.cursor()
        cursor.execute(sql, params)
        return cursor

    def _checkout(self) -> Any:
        """A connection from the pool, waiting as Peewee's ``connect`` would when none is free."""
        try:
            with connecting(), PEEWEE_ERRORS:
                conn = self._db._connect()
        except MaxConnectionsExceeded as exc:
            return self._wait_for_connection(exc)
        except pw.PeeweeException as exc:
            if self.is_outage(exc):
                raise _Lost(exc) from exc
            self._fail(exc)
        self._reached = True
        return conn

    def _wait_for_connection(self, exc: MaxConnectionsExceeded) -> Any:
        db = self._db
        if not db._wait_timeout:
            self._fail(exc, "waiting for a pooled connection")
        deadline = time.monotonic() + db._wait_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                full = MaxConnectionsExceeded("Max connections exceeded, timed out attempting to connect.")
                raise self._wrap(full, "waiting for a pooled connection") from exc
            with db._pool_available:
                db._pool_available.wait(timeout=min(remaining, 1.0))
            try:
                with connecting(), PEEWEE_ERRORS:
                    return db._connect()
            except MaxConnectionsExceeded:
                continue
            except pw.PeeweeException as error:
                if self.is_outage(error):
                    raise _Lost(error) from error
                self._fail(error)

    # ------------------------------------------------------------------
    # Errors
    # ------------------------------------------------------------------

    def _wrap(self, exc: BaseException, operation: Optional[str] = None) -> DBOSSystemDatabaseError:
        """The DBOS exception for a driver error (``failures.py``): this
        database, what it was doing (``operation``, else the statement this
        context sent last), the cause and what to do."""
        if isinstance(exc, DBOSSystemDatabaseError):
            return exc
        if operation is None and isinstance(exc, MaxConnectionsExceeded):
            operation = "waiting for a pooled connection"
        if operation is None:
            operation = "connecting" if at_connect(exc) else operation_of(_sending.get())
        return describe_failure(self.url, operation, exc)

    def failure(self, exc: BaseException, sql: str) -> DBOSSystemDatabaseError:
        """What the driver error ``exc`` of statement ``sql`` is raised as."""
        return self._wrap(exc, operation_of(sql))

    def _fail(self, exc: BaseException, operation: Optional[str] = None) -> NoReturn:
        """Raise ``exc`` as a DBOS exception (``_wrap``), chained; one already is raised as it is."""
        if isinstance(exc, DBOSSystemDatabaseError):
            raise exc
        raise self._wrap(exc, operation) from exc

    @contextmanager
    def naming(self, operation: str) -> Iterator[None]:
        """Inside a unit of work, for SQL sent past ``statement`` (DDL, locks):
        a driver error of the block says it happened while ``operation``. An
        outage passes through unchanged, for the unit of work to retry."""
        try:
            yield
        except Exception as exc:
            if not is_driver_error(exc) or self.is_outage(exc):
                raise
            self._fail(exc, operation)

    @contextmanager
    def wrapped_errors(self, operation: str) -> Iterator[None]:
        """Errors of the block raised as ``DBOSSystemDatabaseError`` (for work
        done outside a unit of work: creating or dropping the database);
        ``operation`` says what the block does, as "creating the database"."""
        try:
            yield
        except DBOSSystemDatabaseError:
            raise
        except Exception as exc:
            self._fail(exc, None if at_connect(exc) else operation)

    def close(self) -> None:
        """Close the pooled connections; a later operation opens new ones.
        Retries pausing for an outage give up."""
        self._closings += 1
        closing, self._closing = self._closing, threading.Event()
        closing.set()
        self._db.close()
        self.backend.close_pool(self._db)


class _Joined:
    """The one "try" of a unit of work on a caller's connection: no transaction
    of its own (the caller's is it), and no retry."""

    done = True

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc_info: Any) -> None:
        pass


class Attempt:
    """One try of a unit of work (see ``Connection.attempts``).

    It borrows this thread's connection unless an outer unit of work holds
    it, in which case it joins that one and leaves outages to the outer one.
    """

    def __init__(self, owner: Connection, transaction: bool) -> None:
        self._owner = owner
        self._transaction = transaction
        self._borrowed = False
        self._atomic: Any = None
        self.done = False
        self.lost: Optional[BaseException] = None  # the outage that ended this try

    def open(self) -> Optional[BaseException]:
        """Borrow the connection and begin the transaction; the outage that
        prevented it, if one did (other errors are raised)."""
        db = self._owner._db
        outer = db.is_closed()
        try:
            if outer:
                _sending.set(None)
                with connecting():
                    db.connect()
                self._borrowed = True
                self._owner._reached = True
            if self._transaction:
                atomic = db.atomic()
                atomic.__enter__()
                self._atomic = atomic
        except (pw.PeeweeException, MaxConnectionsExceeded) as exc:
            if outer and self._owner.is_outage(exc):
                self._discard()
                return exc
            self._give_back()
            self._owner._fail(exc)
        return None

    def __enter__(self) -> None:
        """The work of entering is done by ``open``, before the body's ``with``."""

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> bool:
        failure = exc
        try:
            if self._atomic is not None:
                self._atomic.__exit__(exc_type, exc, tb)  # commit, or roll back
        except BaseException as ending:
            # A rollback that fails after the body failed must not hide why
            # it did; a failed COMMIT is the failure itself.
            failure = exc or ending
            if exc is None:
                _sending.set("COMMIT")
        if self._borrowed and failure is not None and self._owner.is_outage(failure):
            self._discard()
            self.lost = failure
            return True  # the next attempt starts on a fresh connection
        self._give_back()
        if isinstance(failure, (pw.PeeweeException, MaxConnectionsExceeded)):
            self._owner._fail(failure)
        if failure is not exc:
            raise failure  # type: ignore[misc]
        self.done = exc_type is None
        return False

    def _discard(self) -> None:
        """Drop this thread's connection, and the idle ones with it (they
        were likely dropped too, and are not pinged when checked out), so
        the retry connects anew."""
        db = self._owner._db
        if not db.is_closed():
            db.manual_close()
        db.close_idle()

    def _give_back(self) -> None:
        db = self._owner._db
        if self._borrowed and not db.is_closed():
            db.close()
