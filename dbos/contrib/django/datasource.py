"""``@DBOS.transaction`` on Django's own database connection.

The transaction is a ``django.db.transaction.atomic`` block on the calling
thread's connection for one alias, so the ORM writes of the function
(``Order.objects.create(...)``) and the output DBOS records in
``transaction_outputs`` commit or roll back together. That is what makes a
crash between the commit and the step checkpoint harmless: the replay finds
the output and does not run the function again.
"""

from __future__ import annotations

import asyncio
from contextlib import contextmanager, nullcontext
from typing import Any, ContextManager, Iterator, List, Optional, Sequence

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from ..._datasource import Dialect, IsolationLevel, Row, SQLDatasource
from ..._serialization import Serializer
from ...error import DBOSException


class DjangoDatasource(SQLDatasource):
    """Transactions on ``django.db.connections[using]`` inside ``atomic()``.

    ``DBOS.sql_session`` is that connection (a Django ``DatabaseWrapper``), so
    raw SQL goes through ``DBOS.sql_session.cursor()``; ORM calls need nothing
    special. Supports Django's PostgreSQL and SQLite backends; on PostgreSQL
    ``transaction_outputs`` lives in ``schema`` (SQLite has no schemas).

    ``is_retryable`` looks through Django's error wrappers (``django.db.utils``
    errors keep the driver's in ``__cause__``): serialization failures,
    deadlocks, lost connections and SQLite's busy errors are retried.

    Nothing touches Django when this is constructed, so it can be written in
    ``settings.py`` (``DBOS = {..., "application_datasource": DjangoDatasource("other")}``).
    """

    def __init__(self, using: str = DEFAULT_DB_ALIAS, *, schema: str = "dbos") -> None:
        self.using = using
        self.schema = schema

    @classmethod
    def create(cls, using: str = DEFAULT_DB_ALIAS, *, schema: Optional[str] = None,
               serializer: Optional[Serializer] = None) -> "DjangoDatasource":
        """A datasource for ``@ds.transaction()`` on ``DATABASES[using]`` (Django must be
        set up); makes ``datasource_outputs`` if it is missing."""
        return cls(using)._prepared(schema, serializer)

    def __repr__(self) -> str:
        return f"DjangoDatasource({self.using!r}, schema={self.schema!r})"

    @property
    def connection(self) -> Any:
        """This thread's connection for the alias (Django keeps one per thread)."""
        return connections[self.using]

    @property
    def dialect(self) -> Dialect:
        vendor = self.connection.vendor
        if vendor == "postgresql":
            return "postgresql"
        if vendor == "sqlite":
            return "sqlite"
        raise DBOSException(
            f"@DBOS.transaction supports Django's PostgreSQL and SQLite backends; "
            f"DATABASES[{self.using!r}] uses {vendor}"
        )

    @property
    def marker(self) -> str:
        # Django cursors take %s on every backend (its SQLite cursor turns them into ?).
        return "%s"

    @contextmanager
    def _begin(self, isolation_level: IsolationLevel) -> Iterator[Any]:
        _refuse_event_loop_thread()
        conn = self.connection
        self._refuse_open_transaction(conn)
        if conn.connection is not None:
            # Checked before the close below, which would drop pending work.
            self._require_autocommit(conn)
        # Each transaction is treated like a request: Django closes a broken
        # or expired (CONN_MAX_AGE) connection at a request's start and end,
        # and nothing else would do it on DBOS's own threads.
        conn.close_if_unusable_or_obsolete()
        self._require_autocommit(conn)  # connects if needed, so after the close
        try:
            with self._immediate_begin(conn), transaction.atomic(using=self.using):
                if self.dialect == "postgresql":
                    # The first statement of the transaction, so it still may set the level.
                    self._run(conn, f"SET TRANSACTION ISOLATION LEVEL {isolation_level}")
                yield conn
        finally:
            conn.close_if_unusable_or_obsolete()

    def _refuse_open_transaction(self, conn: Any) -> None:
        # Inside an open atomic block our COMMIT would only release a savepoint:
        # the output could vanish with the outer transaction after the step is
        # checkpointed, and the function would then never run again.
        if conn.in_atomic_block:
            raise DBOSException(
                f"A @DBOS.transaction cannot run inside a transaction.atomic() block already open "
                f"on Django's {self.using!r} connection in this thread (ATOMIC_REQUESTS and "
                "django.test.TestCase open one too). Call it outside that block, start the "
                "workflow with DBOS.start_workflow() (it runs on its own thread), or use "
                "TransactionTestCase in tests"
            )

    def _require_autocommit(self, conn: Any) -> None:
        # Django treats a connection outside autocommit as already in a
        # transaction: atomic() would not commit either.
        if not conn.get_autocommit():
            raise DBOSException(
                f"A @DBOS.transaction needs Django's {self.using!r} connection in autocommit "
                "mode (the default); AUTOCOMMIT is off or set_autocommit(False) was called"
            )

    def _immediate_begin(self, conn: Any) -> ContextManager[None]:
        if self.dialect != "sqlite":
            return nullcontext()
        return _sqlite_begin_immediate(conn)

    def _run(self, session: Any, sql: str, params: Sequence[Any] = ()) -> List[Row]:
        with session.cursor() as cursor:
            # Without parameters the text goes to the driver as is (no % escaping).
            cursor.execute(sql, tuple(params) if params else None)
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else []


def _refuse_event_loop_thread() -> None:
    # Django refuses synchronous database access on a thread running an event
    # loop (SynchronousOnlyOperation); say how to run the transaction instead.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise DBOSException(
        "A @DBOS.transaction on Django's connection cannot run on the thread of an asyncio "
        "event loop, where Django forbids synchronous database access: from an async "
        "workflow, call it as `await asyncio.to_thread(my_transaction, ...)`"
    )


@contextmanager
def _sqlite_begin_immediate(conn: Any) -> Iterator[None]:
    """Make the ``atomic()`` block below begin with ``BEGIN IMMEDIATE``.

    A deferred transaction that reads first (we look for a recorded output
    first) and writes later must upgrade its lock, and in WAL mode that
    fails at once with SQLITE_BUSY, busy timeout or not, whenever another
    writer committed in between. Taking the write lock at BEGIN makes
    writers queue on the busy timeout instead, like PeeweeDatasource does.

    Django 5.1+ begins with ``BEGIN <transaction_mode>`` (its
    ``OPTIONS["transaction_mode"]``, kept on the connection); we set that
    for our block only. Older Django always begins deferred: transactions
    stay correct there, a lost race surfacing as SQLITE_BUSY, which
    ``is_retryable`` accepts, so the whole transaction runs again.
    """
    conn.ensure_connection()  # connecting re-reads transaction_mode from OPTIONS
    if not hasattr(conn, "transaction_mode"):
        yield
        return
    previous = conn.transaction_mode
    conn.transaction_mode = "IMMEDIATE"
    try:
        yield
    finally:
        conn.transaction_mode = previous
