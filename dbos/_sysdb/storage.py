"""``SystemDatabase``: the one interface through which the engine reaches its tables.

Each operation borrows a pooled connection for its own duration and returns
it, so a thread that ends never leaves a connection open. A connection the
server dropped is discarded and the operation retried once on a fresh one.
Driver errors leave this module as ``DBOSSystemDatabaseError``.

The statements every workflow runs (start, step checkpoints, finish) go
through ``statement``: on PostgreSQL it takes a connection straight from the
pool and puts it back, without Peewee's per-thread connection state, which
cost each of them more Python time than sending the statement itself.
"""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, TypeVar, Union

import peewee as pw
from playhouse.pool import MaxConnectionsExceeded

from ..error import DBOSMigrationRequiredError, DBOSSystemDatabaseError
from .._versions import VersionInfo
from .backend import PEEWEE_ERRORS, Backend, backend_for, driver_error
from .migrator import Migration, Migrator, latest_version
from .models import BoundModels
from .url import DatabaseURL
from .listener import Listener
from .messages import MessageStore
from .management import ManagementStore
from .queues import QueueStore
from .workflows import WorkflowStore

logger = logging.getLogger("dbos")

T = TypeVar("T")

_peewee_log = logging.getLogger("peewee")


def now_ms() -> int:
    return int(time.time() * 1000)


class _Reconnect(Exception):
    """The connection was lost mid-operation; try again on a new one."""


class SystemDatabase:
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
        # Only PostgreSQL takes the direct path: there Peewee's per-thread
        # connect and close showed in profiles beside a sub-millisecond commit.
        # It uses the pool's internals, so a Peewee without them (older than
        # the 4.x we test) keeps the ordinary path.
        self._direct = not self.url.is_sqlite and all(
            hasattr(self._db, name) for name in ("_connect", "_close", "_pool_available", "_wait_timeout"))
        self.models = BoundModels(self._db, self.backend.schema)
        self.workflows = WorkflowStore(self)
        self.messages = MessageStore(self)
        self.queues = QueueStore(self)
        self.management = ManagementStore(self)

    @property
    def schema(self) -> Optional[str]:
        return self.backend.schema

    @property
    def is_sqlite(self) -> bool:
        return self.url.is_sqlite

    # ------------------------------------------------------------------
    # Connections and transactions
    # ------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[pw.Database]:
        """This thread's connection: borrowed here unless an outer call holds one."""
        db = self._db
        if not db.is_closed():
            yield db
            return
        db.connect()
        try:
            yield db
        except pw.PeeweeException as exc:
            # A lost connection shows as pw.OperationalError, or as
            # pw.InterfaceError when the transaction's ROLLBACK finds it closed.
            if self.backend.is_disconnect(exc):
                db.manual_close()
                # Idle connections are not pinged when checked out, so those
                # the server dropped with this one go too: the retry connects anew.
                db.close_idle()
                raise _Reconnect() from exc
            raise
        finally:
            if not db.is_closed():
                db.close()

    def run(self, work: Callable[[], T], *, transaction: bool = True) -> T:
        """Run ``work`` on a connection (in a transaction), wrapping driver errors."""
        for attempt in (1, 2):
            try:
                with self._connection() as db:
                    if not transaction:
                        return work()
                    with db.atomic():
                        return work()
            except _Reconnect as exc:
                if attempt == 2:
                    raise self._wrap(exc.__cause__ or exc) from exc.__cause__
                logger.warning(f"Lost the connection to {self.url}; reconnecting")
            except (pw.PeeweeException, MaxConnectionsExceeded) as exc:
                raise self._wrap(exc) from exc
        raise AssertionError("unreachable")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement on this thread's connection; only inside ``run``."""
        return self._db.execute_sql(sql, params)

    def statement(self, sql: str, params: Sequence[Any], read: Callable[[Any], T]) -> T:
        """Run one statement, committed by itself, and ``read`` its cursor.

        Inside ``run`` (a connection or transaction held) it joins that
        connection like ``execute``.
        """
        if self._direct and self._db._state.closed:
            return self._direct_statement(sql, params, read)
        return self.run(lambda: read(self.execute(sql, params)), transaction=False)

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
                # As in ``_connection``: the idle ones were likely dropped too.
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

    # ------------------------------------------------------------------
    # Schema lifecycle
    # ------------------------------------------------------------------

    def exists(self) -> bool:
        return self._guard(self.backend.database_exists)

    def create_if_missing(self) -> None:
        self._guard(self.backend.create_database)

    def migrate(self, migrations: Optional[Sequence[Migration]] = None) -> List[int]:
        """Create the database if needed and apply every pending migration.

        ``migrations`` defaults to those shipped in the package.
        """
        self.create_if_missing()
        migrator = Migrator(self.backend, self._db, migrations)
        return self.run(migrator.migrate, transaction=False)

    def schema_version(self) -> int:
        if not self.exists():
            return 0
        return self.run(lambda: Migrator(self.backend, self._db).current_version())

    def verify_schema(self, command: str) -> None:
        """Raise if the schema is behind this code; a newer schema is fine."""
        current, required = self.schema_version(), latest_version()
        if current < required:
            raise DBOSMigrationRequiredError(current, required, command)

    def listen(self, on_key: Callable[[str], None]) -> Optional["Listener"]:
        """Start waking ``on_key`` for keys other processes notify (PostgreSQL only)."""
        if self.is_sqlite:
            return None
        listener = Listener(self.url, on_key)
        listener.start()
        return listener

    def grant(self, role: str) -> None:
        """Give an application role access to the system tables (PostgreSQL)."""

        def work() -> None:
            for statement in self.backend.grant_sql(role):
                self._db.execute_sql(statement)

        self.run(work)

    def table_names(self) -> List[str]:
        return self.run(lambda: self.backend.table_names(self._db), transaction=False)

    def truncate(self) -> None:
        """Delete every row but the migration version; keep the schema."""
        present = set(self.table_names())
        tables = [m._meta.table_name for m in self.models.data_tables()]
        self.run(lambda: self.backend.truncate(self._db, [t for t in tables if t in present]))

    def drop(self) -> str:
        """Drop the whole database (PostgreSQL) or delete its file (SQLite).

        A database that also holds other data (an application's tables beside
        ours) keeps it: only our schema (PostgreSQL) or our tables (SQLite) go.
        Returns what was dropped: "database", "schema" or "tables".
        """
        self.close()
        own = list(self.models.by_table)
        return self._guard(lambda: self.backend.drop_database(own))

    def close(self) -> None:
        """Close the pooled connections; a later operation opens new ones."""
        self._db.close()
        self.backend.close_pool(self._db)

    def _guard(self, work: Callable[[], T]) -> T:
        try:
            return work()
        except Exception as exc:
            if isinstance(exc, DBOSSystemDatabaseError):
                raise
            raise self._wrap(exc) from exc

    # ------------------------------------------------------------------
    # Application versions
    # ------------------------------------------------------------------

    def register_application_version(self, version_name: str, application_name: str) -> None:
        versions = self.models.application_versions
        stamp = now_ms()
        row = dict(
            version_id=str(uuid.uuid4()),
            version_name=version_name,
            version_timestamp=stamp,
            created_at=stamp,
            application_name=application_name,
        )
        self.run(lambda: versions.insert(**row).on_conflict_ignore().execute())

    def list_application_versions(self) -> List[VersionInfo]:
        versions = self.models.application_versions
        query = versions.select().order_by(versions.version_timestamp.desc())

        def fetch() -> List[VersionInfo]:
            rows: List[Dict[str, Any]] = [dict(r) for r in query.dicts().execute()]
            return [_version_info(r) for r in rows]

        return self.run(fetch, transaction=False)

    def set_latest_application_version(self, version_name: str) -> None:
        versions = self.models.application_versions
        query = versions.update(version_timestamp=now_ms()).where(
            versions.version_name == version_name
        )
        self.run(lambda: query.execute())


def _version_info(row: Dict[str, Any]) -> VersionInfo:
    return VersionInfo(
        version_id=row["version_id"],
        version_name=row["version_name"],
        version_timestamp=int(row["version_timestamp"]),
        created_at=int(row["created_at"]),
        application_name=row["application_name"],
    )


