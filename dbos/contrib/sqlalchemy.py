"""``@DBOS.transaction`` on a SQLAlchemy engine: ``DBOS.sql_session`` is an ORM ``Session``.

This is what DBOS Transact programs expect: inside a transaction function
they call ``DBOS.sql_session.execute(sqlalchemy.text(...))`` or add ORM
objects to it. The session is bound to one ``Connection`` whose transaction
the datasource opens and ends itself, so the user's writes and the recorded
output in ``transaction_outputs`` commit together, or not at all.

SQLAlchemy is imported here only; the core package never imports this module
unless SQLAlchemy is wanted.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Dict, Generic, Iterator, List, Optional, Sequence, TypeVar

from sqlalchemy import URL, Connection, Engine, create_engine, event
from sqlalchemy.engine import RootTransaction
from sqlalchemy.exc import DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session

from .._datasource import Dialect, IsolationLevel, Row, SQLDatasource, is_retryable_error
from .._datasource.interface import POOL_TIMEOUT_S
from .._datasource.urls import parse_url
from .._serialization import Serializer
from .._sysdb.backend import BUSY_TIMEOUT_MS, backend_for
from .._sysdb.url import DatabaseURL, mask_url
from ..error import DBOSException, DBOSInvalidArgumentError

# DBOS Transact's application-engine defaults, so a program moved over gets
# the same pool. No pool_pre_ping: it costs a round trip per transaction, and
# a dead pooled connection fails the first statement with an error
# ``is_retryable`` accepts, after which SQLAlchemy drops the whole stale pool.
POOL_DEFAULTS: Dict[str, Any] = {"pool_size": 20, "max_overflow": 0, "pool_timeout": POOL_TIMEOUT_S}
# Where ``session.info`` keeps the transaction the datasource opened.
_OPEN_KEY = "dbos_transaction"


@dataclass
class _Open:
    """The connection and root transaction behind one yielded session."""

    connection: Connection
    transaction: RootTransaction


E = TypeVar("E")


class EngineOwner(Generic[E]):
    """The engine a SQLAlchemy datasource runs on, and whether it made it."""

    _engine: E
    _owned: bool
    _dialect: Dialect

    @property
    def engine(self) -> E:
        return self._engine

    @property
    def created_engine(self) -> bool:
        """Whether the engine was made here (and is disposed by ``close()``)."""
        return self._owned

    @property
    def dialect(self) -> Dialect:
        return self._dialect


class SQLAlchemyDatasource(EngineOwner[Engine], SQLDatasource):
    """Transactions on connections of a SQLAlchemy engine (SQLite or PostgreSQL).

    Each transaction checks out one connection, begins a transaction on it at
    the requested isolation level (SQLite: always a write transaction taken at
    BEGIN), and yields a ``Session`` bound to it. A ``commit()`` the user calls
    on that session only flushes: the datasource commits after the output is
    recorded, so the two can never be split.
    """

    def __init__(self, engine: Engine, *, schema: str = "dbos") -> None:
        if not isinstance(engine, Engine):
            raise TypeError(
                f"SQLAlchemyDatasource needs a synchronous sqlalchemy.Engine, not {type(engine).__name__}"
            )
        self._engine = engine
        self.schema = schema
        self._owned = False
        self._dialect = supported_dialect(engine)

    @classmethod
    def create(cls, database_url: str, engine_kwargs: Optional[Dict[str, Any]] = None,
               engine: Optional[Engine] = None, schema: Optional[str] = None,
               serializer: Optional[Serializer] = None) -> "SQLAlchemyDatasource":
        """A datasource for ``@ds.transaction()`` functions, which use ``ds.sql_session()``.

        On ``engine`` if given, else on an engine of its own for ``database_url``
        (the database is created if missing; ``engine_kwargs`` go to
        ``create_engine``). Makes ``datasource_outputs`` in ``schema``
        (default ``dbos``; SQLite has no schemas) if it is missing.
        """
        source = cls(engine) if engine is not None else cls.from_url(database_url, **(engine_kwargs or {}))
        return source._prepared(schema, serializer)

    @classmethod
    def from_url(cls, url: str, **engine_kwargs: Any) -> "SQLAlchemyDatasource":
        """An engine on ``url`` (``sqlite:///path`` or ``postgresql://...``), created first if missing.

        ``engine_kwargs`` go to ``create_engine`` over the defaults
        (``connect_args`` is merged key by key). The engine is disposed by
        ``close()``.
        """
        parsed = parse_url(url)
        url_object = engine_url(url, parsed, SYNC_DRIVERS)
        kwargs = engine_kwargs_for(url_object, parsed, engine_kwargs)
        engine = with_driver_check(url, lambda: create_engine(url_object, **kwargs))  # connects to nothing yet
        backend_for(parsed).create_database()  # PostgreSQL: CREATE DATABASE; SQLite: the file, in WAL mode
        if parsed.is_sqlite:
            use_immediate_transactions(engine)
        source = cls(engine)
        source._owned = True
        return source

    @contextmanager
    def _begin(self, isolation_level: IsolationLevel) -> Iterator[Session]:
        with self._engine.connect() as conn, self._driver_begins_nothing(conn):
            trans = self._start(conn, isolation_level)
            # rollback_only: a user commit() flushes but leaves the COMMIT to us.
            session = Session(bind=conn, join_transaction_mode="rollback_only")
            session.info[_OPEN_KEY] = _Open(conn, trans)
            try:
                yield session
                session.flush()  # pending ORM objects belong to this transaction
            except BaseException:
                _rollback_quietly(conn, trans)
                raise
            finally:
                session.info.pop(_OPEN_KEY, None)  # a session kept past its transaction runs nothing for us
                session.close()
            trans.commit()

    def _start(self, conn: Connection, isolation_level: IsolationLevel) -> RootTransaction:
        if self._dialect == "postgresql":
            # Set on the driver before BEGIN; reset when the connection goes back to the pool.
            conn.execution_options(isolation_level=isolation_level)
            return conn.begin()
        trans = conn.begin()  # on an engine from from_url, its begin hook emits BEGIN IMMEDIATE
        if not _driver(conn).in_transaction:
            # The user's own engine, without that hook. SQLite is serializable
            # anyway; what matters is taking the write lock at BEGIN: a reader
            # upgrading to writer later can fail at once with "database is
            # locked", busy timeout or not.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        return trans

    @contextmanager
    def _driver_begins_nothing(self, conn: Connection) -> Iterator[None]:
        """On SQLite, stop sqlite3 from issuing its own (deferred) BEGIN while we use ``conn``.

        A connection of an engine from ``from_url`` is like that already; one
        of the user's engine gets its setting back before it returns to the pool.
        """
        if self._dialect != "sqlite" or _driver(conn).isolation_level is None:
            yield
            return
        saved = _driver(conn).isolation_level
        _driver(conn).isolation_level = None  # no transaction is open yet, so this commits nothing
        try:
            yield
        finally:
            if not conn.invalidated:
                _driver(conn).isolation_level = saved

    def sql_session(self) -> Session:
        """The ORM ``Session`` of this datasource's transaction running here."""
        session: Session = super().sql_session()
        return session

    def _run(self, session: Any, sql: str, params: Sequence[Any] = ()) -> List[Row]:
        conn = _open_transaction(session).connection
        session.flush()  # like SQLAlchemy's autoflush: the user's pending writes go first
        # exec_driver_sql, as the SQL uses the driver's own markers. Without
        # parameters nothing is passed, so psycopg leaves any % in the text alone.
        result = conn.exec_driver_sql(sql, tuple(params)) if params else conn.exec_driver_sql(sql)
        return [tuple(row) for row in result.fetchall()] if result.returns_rows else []

    def is_retryable(self, exc: BaseException) -> bool:
        # SQLAlchemy says so itself when the connection died under a statement.
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return True
        return is_retryable_error(exc)  # looks through DBAPIError.orig to the driver's error

    def run_migrations(self) -> None:
        """Make the outputs table if it is missing (``create(...)`` does it already)."""
        self.ensure_schema()

    def close(self) -> None:
        if self._owned:
            self._engine.dispose()


def supported_dialect(engine: Any) -> Dialect:
    name = engine.dialect.name
    if name == "sqlite":
        return "sqlite"
    if name == "postgresql":
        return "postgresql"
    raise DBOSException(f"@DBOS.transaction supports SQLite and PostgreSQL databases, not {name}")


def _driver(conn: Connection) -> Any:
    """The driver's own connection (sqlite3 or psycopg) under ``conn``."""
    return conn.connection.driver_connection


def _open_transaction(session: Any) -> _Open:
    opened = session.info.get(_OPEN_KEY) if isinstance(session, Session) else None
    if not isinstance(opened, _Open):
        raise DBOSException("this session was not opened by SQLAlchemyDatasource.begin()")
    if not opened.transaction.is_active:
        # Recording the output now would commit it on its own, without the
        # user's writes that a rollback() already discarded.
        raise DBOSException(
            "the transaction of DBOS.sql_session was rolled back by the @DBOS.transaction "
            "function; it must leave commit and rollback to DBOS (raise an exception to roll back)"
        )
    return opened


def _rollback_quietly(conn: Connection, trans: RootTransaction) -> None:
    try:
        if trans.is_active:
            trans.rollback()
    except Exception:
        # ROLLBACK fails only on a broken connection, whose transaction the
        # server dropped anyway. Discard it; the caller sees the first error.
        conn.invalidate()


# ----------------------------------------------------------------------
# An engine of our own, from one of our URLs
# ----------------------------------------------------------------------


# The driver an engine uses when the URL names none.
SYNC_DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg2"}


def engine_url(url: str, parsed: DatabaseURL, drivers: Dict[str, str]) -> URL:
    """SQLAlchemy's URL for one of ours, with the driver the URL names or the default."""
    scheme = url.partition("://")[0]
    driver = scheme.partition("+")[2] or drivers[parsed.backend]
    if parsed.is_sqlite:
        return URL.create(f"sqlite+{driver}", database=parsed.sqlite_path)
    return URL.create(
        f"postgresql+{driver}",
        username=parsed.user,
        password=parsed.password,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=parsed.query,
    )


def with_driver_check(url: str, make: Any) -> Any:
    """``make()``, an engine; a missing driver becomes an error saying what to install."""
    try:
        return make()
    except (NoSuchModuleError, ImportError) as exc:
        raise DBOSInvalidArgumentError(
            "database_url", mask_url(url), f"its database driver is not installed ({exc}); "
            "install it (e.g. pip install psycopg2-binary, psycopg[binary] or aiosqlite) or name another "
            "in the URL, as in postgresql+psycopg://") from None


def engine_kwargs_for(url: URL, parsed: DatabaseURL, given: Dict[str, Any]) -> Dict[str, Any]:
    kwargs = {} if "poolclass" in given else dict(POOL_DEFAULTS)  # NullPool & co. refuse pool sizes
    kwargs.update({key: value for key, value in given.items() if key != "connect_args"})
    kwargs["connect_args"] = {**_default_connect_args(url, parsed), **given.get("connect_args", {})}
    return kwargs


def _default_connect_args(url: URL, parsed: DatabaseURL) -> Dict[str, Any]:
    if parsed.is_sqlite:
        return {"timeout": BUSY_TIMEOUT_MS / 1000}  # sqlite3's busy timeout, in seconds
    if url.get_driver_name() == "asyncpg":  # its own names for the same two settings
        return {"server_settings": {"application_name": "dbos_transact"}, "timeout": 10}
    defaults = {"application_name": "dbos_transact", "connect_timeout": 10}
    # Settings in the URL's query win; connect_args would override them.
    return {key: value for key, value in defaults.items() if key not in parsed.query}


def use_immediate_transactions(engine: Engine) -> None:
    """SQLAlchemy's documented pysqlite recipe, with BEGIN IMMEDIATE.

    sqlite3 left to itself begins a deferred transaction only before the
    first INSERT/UPDATE/DELETE, so a transaction's reads would run outside
    it and the write lock would be taken late. Instead it emits no BEGIN,
    and every transaction on the engine (ours, or the user's own on
    ``.engine``) begins with BEGIN IMMEDIATE.
    """

    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()  # aiosqlite's adapted connection has no execute()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = FULL")  # as the system database: a commit is durable
        cursor.close()

    def on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
