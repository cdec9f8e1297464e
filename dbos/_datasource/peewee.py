"""``PeeweeDatasource``: transactions on a Peewee database (the default).

Either the user's own Peewee database, or one opened from
``application_database_url``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import peewee as pw
from playhouse.pool import PooledDatabase

from .._serialization import Serializer
from .._sysdb.backend import backend_for
from ..error import DBOSException
from .interface import POOL_TIMEOUT_S, Dialect, Row
from .levels import IsolationLevel
from .outputs import SQLDatasource
from .urls import parse_url

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
        backend = backend_for(parse_url(url))
        backend.create_database()  # PostgreSQL: CREATE DATABASE; SQLite: the file, in WAL mode
        source = cls(backend.open(pool_size, POOL_TIMEOUT_S, {}))
        source._owned = True
        return source

    @classmethod
    def create(cls, database: Union[str, PeeweeTarget], *, schema: Optional[str] = None,
               serializer: Optional[Serializer] = None, pool_size: int = 20) -> "PeeweeDatasource":
        """A datasource for ``@ds.transaction()`` on a Peewee database, or on one opened
        from a URL (created first if missing); makes ``datasource_outputs`` if it is missing."""
        source = cls.from_url(database, pool_size=pool_size) if isinstance(database, str) else cls(database)
        return source._prepared(schema, serializer)

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
    def _begin(self, isolation_level: IsolationLevel) -> Iterator[pw.Database]:
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
