"""``@ds.transaction()``, ``ds.run_tx_step(...)`` and ``ds.sql_session()`` on every datasource.

This is DBOS Transact 2.x's datasource API, the same whatever library the
datasource wraps. Inside a workflow a transaction is a step whose outcome is
also recorded in the application database, in the transaction itself; that
durable part belongs to the engine, a layer above this one, which installs
its runners here when it is imported (``install_runners``). Importing
``dbos`` imports the engine, so they are always installed before a
decorated function can be called.
"""

from __future__ import annotations

import functools
import inspect
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, Iterator, Optional, Tuple, TypedDict, TypeVar, overload

from ..error import DBOSException, DBOSInvalidArgumentError
from .levels import IsolationLevel, check_level

F = TypeVar("F", bound=Callable[..., Any])

# (datasource, the step's name, isolation level, function, args, kwargs) -> its value.
Runner = Callable[[Any, str, str, Callable[..., Any], Tuple[Any, ...], Dict[str, Any]], Any]
AsyncRunner = Callable[[Any, str, str, Callable[..., Any], Tuple[Any, ...], Dict[str, Any]], Awaitable[Any]]


class DatasourceOptions(TypedDict, total=False):
    """Options of ``run_tx_step``: the step's name and the isolation level."""

    name: str
    isolation_level: IsolationLevel


@dataclass
class _Runners:
    sync: Optional[Runner] = None
    asynchronous: Optional[AsyncRunner] = None


_runners = _Runners()

# The datasource whose transaction is open here, and that transaction's session.
_open: ContextVar[Optional[Tuple[object, Any]]] = ContextVar("dbos_datasource_session", default=None)


def install_runners(sync: Runner, asynchronous: AsyncRunner) -> None:
    """Called once by the engine: how a datasource transaction runs as a step."""
    _runners.sync, _runners.asynchronous = sync, asynchronous


@contextmanager
def opened_session(datasource: object, session: Any) -> Iterator[None]:
    """Make ``session`` what ``datasource.sql_session()`` returns for the block."""
    token = _open.set((datasource, session))
    try:
        yield
    finally:
        _open.reset(token)


class TransactionSteps:
    """The 2.x API, mixed into ``Datasource`` and ``AsyncDatasource``."""

    is_async: bool = False

    @overload
    def transaction(self, func: F) -> F: ...

    @overload
    def transaction(self, func: None = None, *, name: Optional[str] = None,
                    isolation_level: IsolationLevel = "SERIALIZABLE") -> Callable[[F], F]: ...

    def transaction(self, func: Optional[F] = None, *, name: Optional[str] = None,
                    isolation_level: IsolationLevel = "SERIALIZABLE") -> Any:
        """Decorate a function to run in a transaction of this datasource,
        exactly once inside a workflow: ``@ds.transaction()``.

        ``name`` is the step's name (default: the function's qualified name).
        """
        if func is not None and not callable(func):
            raise DBOSInvalidArgumentError(
                "function", func, "ds.transaction() decorates a function; for a transaction "
                "block use `with ds.begin(isolation_level) as session:`")
        check_level(isolation_level)

        def decorate(f: F) -> F:
            return self._wrap(f, name or f.__qualname__, isolation_level)

        return decorate if func is None else decorate(func)

    def _wrap(self, func: F, name: str, isolation_level: str) -> F:
        self._check_kind(func, "transaction")
        if self.is_async:
            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                return await _async_runner()(self, name, isolation_level, func, args, kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            return _sync_runner()(self, name, isolation_level, func, args, kwargs)

        return run  # type: ignore[return-value]

    def _check_kind(self, func: Callable[..., Any], api: str) -> None:
        is_coroutine = inspect.iscoroutinefunction(func)
        if self.is_async and not is_coroutine:
            raise DBOSException(f"{type(self).__name__}.{api} needs a coroutine function (async def); "
                                f"{_name(func)} is not one. Use SQLAlchemyDatasource for regular functions")
        if not self.is_async and is_coroutine:
            raise DBOSException(f"{type(self).__name__}.{api} needs a regular function; {_name(func)} is "
                                "a coroutine function. Use AsyncSQLAlchemyDatasource for async def")

    def run_tx_step(self, ds_options: Optional[DatasourceOptions], func: Callable[..., Any],
                    *args: Any, **kwargs: Any) -> Any:
        """Run ``func(*args, **kwargs)`` as a transaction of this datasource without decorating it."""
        if self.is_async:
            raise DBOSException(f"{type(self).__name__} runs coroutines: use await ds.run_tx_step_async(...)")
        self._check_kind(func, "run_tx_step")
        name, level = _options(ds_options, func)
        return _sync_runner()(self, name, level, func, args, kwargs)

    async def run_tx_step_async(self, ds_options: Optional[DatasourceOptions], func: Callable[..., Any],
                                *args: Any, **kwargs: Any) -> Any:
        """``run_tx_step`` for an async datasource and a coroutine function."""
        if not self.is_async:
            raise DBOSException(f"{type(self).__name__} runs regular functions: use ds.run_tx_step(...)")
        self._check_kind(func, "run_tx_step_async")
        name, level = _options(ds_options, func)
        return await _async_runner()(self, name, level, func, args, kwargs)

    def sql_session(self) -> Any:
        """The session of this datasource's transaction running here (a SQLAlchemy
        ``Session`` or ``AsyncSession``, a Peewee database, a DB-API or Django connection)."""
        current = _open.get()
        if current is None or current[0] is not self:
            # An AssertionError, as in DBOS Transact: a programming error.
            raise AssertionError(f"sql_session() of {type(self).__name__} must be called inside one of its "
                                 "transactions (a function decorated with @ds.transaction())")
        return current[1]


def _options(options: Optional[DatasourceOptions], func: Callable[..., Any]) -> Tuple[str, str]:
    given = options or {}
    level = given.get("isolation_level", "SERIALIZABLE")
    check_level(level)
    return given.get("name") or _name(func), level


def _name(func: Callable[..., Any]) -> str:
    return str(getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func))


def _sync_runner() -> Runner:
    if _runners.sync is None:
        raise DBOSException("datasource transactions need the DBOS engine: import dbos first")
    return _runners.sync


def _async_runner() -> AsyncRunner:
    if _runners.asynchronous is None:
        raise DBOSException("datasource transactions need the DBOS engine: import dbos first")
    return _runners.asynchronous
