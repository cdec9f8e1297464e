"""``AsyncSQLAlchemyDatasource``: ``@ads.transaction()`` for ``async def`` functions.

The same contract as ``SQLAlchemyDatasource``, on an ``AsyncEngine``: the
function's writes through ``ads.sql_session()`` (an ``AsyncSession``) and
its recorded output in ``datasource_outputs`` commit together. SQLite runs
through aiosqlite; PostgreSQL through psycopg 3 (``postgresql://``, or
``postgresql+psycopg://``) or asyncpg (``postgresql+asyncpg://``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import weakref
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Sequence

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from .._datasource import (
    DATASOURCE_OUTPUTS,
    AsyncDatasource,
    Dialect,
    IsolationLevel,
    Outcome,
    Recorded,
    Row,
    is_retryable_error,
)
from .._datasource.outputs import OutputsSQL
from .._datasource.urls import parse_url
from .._serialization import Serializer
from .._sysdb.backend import backend_for
from .sqlalchemy import (
    EngineOwner,
    engine_kwargs_for,
    engine_url,
    supported_dialect,
    use_immediate_transactions,
    with_driver_check,
)


def _async_drivers() -> Dict[str, str]:
    """The drivers used when the URL names none: psycopg 3 if installed, else asyncpg."""
    has = importlib.util.find_spec
    postgres = "asyncpg" if has("asyncpg") and not has("psycopg") else "psycopg"
    return {"sqlite": "aiosqlite", "postgresql": postgres}


class AsyncSQLAlchemyDatasource(EngineOwner[AsyncEngine], AsyncDatasource):
    """Transactions of coroutine functions on an ``AsyncEngine`` (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine, *, schema: str = "dbos") -> None:
        if not isinstance(engine, AsyncEngine):
            raise TypeError(f"AsyncSQLAlchemyDatasource needs a sqlalchemy AsyncEngine, not {type(engine).__name__}")
        self._engine = engine
        self.schema = schema
        self._owned = False
        self._dialect: Dialect = supported_dialect(engine)
        # An async driver's connection belongs to the event loop that opened
        # it, and a workflow may run on the caller's loop or on DBOS's own: an
        # engine of our own gets a twin per loop (its pool with it).
        self._make: Optional[Callable[[], AsyncEngine]] = None
        self._per_loop: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncEngine]" = (
            weakref.WeakKeyDictionary())

    @classmethod
    async def create(cls, database_url: str, engine_kwargs: Optional[Dict[str, Any]] = None,
                     engine: Optional[AsyncEngine] = None, schema: Optional[str] = None,
                     serializer: Optional[Serializer] = None) -> "AsyncSQLAlchemyDatasource":
        """``SQLAlchemyDatasource.create`` for async code: ``ads = await AsyncSQLAlchemyDatasource.create(url)``."""
        source = cls(engine) if engine is not None else cls._from_url(database_url, engine_kwargs or {})
        source.outputs_table = DATASOURCE_OUTPUTS
        if schema is not None:
            source.schema = schema
        source.serializer = serializer
        await source.ensure_schema()
        return source

    @classmethod
    def _from_url(cls, url: str, engine_kwargs: Dict[str, Any]) -> "AsyncSQLAlchemyDatasource":
        parsed = parse_url(url)
        url_object = engine_url(url, parsed, _async_drivers())
        kwargs = engine_kwargs_for(url_object, parsed, engine_kwargs)

        def make() -> AsyncEngine:
            engine: AsyncEngine = with_driver_check(url, lambda: create_async_engine(url_object, **kwargs))
            if parsed.is_sqlite:
                use_immediate_transactions(engine.sync_engine)
            return engine

        first = make()  # connects to nothing yet: a missing driver is found before anything is written
        backend_for(parsed).create_database()  # a blocking moment, once, before the app serves anything
        source = cls(first)
        source._owned, source._make = True, make
        return source

    def _engine_here(self) -> AsyncEngine:
        """The engine whose connections belong to the running event loop."""
        loop = asyncio.get_running_loop()
        if self._make is None:
            return self._engine
        engine = self._per_loop.get(loop)
        if engine is None:
            # The first loop to ask gets the engine create() made.
            engine = self._engine if self._engine not in self._per_loop.values() else self._make()
            self._per_loop[loop] = engine
        return engine

    @property
    def sql(self) -> OutputsSQL:
        return OutputsSQL(self._dialect, self.schema, self.outputs_table, lambda i: f":p{i}")

    @asynccontextmanager
    async def _begin(self, isolation_level: IsolationLevel) -> AsyncIterator[AsyncSession]:
        async with self._engine_here().connect() as conn:
            if self._dialect == "postgresql":
                await conn.execution_options(isolation_level=isolation_level)
            trans = await conn.begin()
            # rollback_only: a user commit() flushes but leaves the COMMIT to us.
            session = AsyncSession(bind=conn, join_transaction_mode="rollback_only")
            try:
                yield session
                await session.flush()
            except BaseException:
                await _rollback_quietly(conn)
                raise
            finally:
                await session.close()
            await trans.commit()

    def sql_session(self) -> AsyncSession:
        """The ``AsyncSession`` of this datasource's transaction running here."""
        session: AsyncSession = super().sql_session()
        return session

    async def _run(self, session: AsyncSession, sql: str, params: Sequence[Any] = ()) -> List[Row]:
        await session.flush()  # the user's pending writes go first
        result = await session.connection()
        rows = await result.execute(text(sql), {f"p{i}": value for i, value in enumerate(params)})
        return [tuple(row) for row in rows.fetchall()] if rows.returns_rows else []

    async def run_migrations(self) -> None:
        """Make the outputs table if it is missing (``create(...)`` does it already)."""
        await self.ensure_schema()

    async def ensure_schema(self) -> None:
        sql = self.sql
        async with self._begin("READ COMMITTED") as session:
            if self.outputs_table.current_column in await self._columns(session, sql):
                return
            lock = sql.creator_lock()
            for statement in ([lock] if lock else []) + sql.creation():
                await self._run(session, statement)

    async def _columns(self, session: AsyncSession, sql: OutputsSQL) -> List[str]:
        query, params = sql.columns()
        return [str(row[0]) for row in await self._run(session, query, params)]

    async def recorded_output(self, session: Any, workflow_id: str, step_id: int) -> Recorded:
        rows = await self._run(session, self.sql.select(), (workflow_id, step_id))
        return (rows[0][0], rows[0][1]) if rows else None

    async def record_output(self, session: Any, outcome: Outcome) -> None:
        sql = self.sql
        await self._run(session, sql.insert(), sql.insert_params(outcome))

    def is_retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return True
        return is_retryable_error(exc)

    async def close(self) -> None:
        """Dispose of the engine(s), if this datasource made them."""
        if not self._owned:
            return
        here = self._per_loop.get(asyncio.get_running_loop())
        for engine in {self._engine, *self._per_loop.values()}:
            # Another loop's connections can only be closed on that loop (which
            # may be gone): those are let go, and close when collected.
            await engine.dispose(close=engine is here or not self._per_loop)


async def _rollback_quietly(conn: AsyncConnection) -> None:
    try:
        if conn.in_transaction():
            await conn.rollback()
    except Exception:
        # Only a broken connection fails a ROLLBACK, and its transaction is gone anyway.
        await conn.invalidate()

