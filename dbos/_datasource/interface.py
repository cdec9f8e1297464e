"""``Datasource``: the application database, as transactions see it.

A transaction function runs inside a transaction of the application's
database, and its serialized output is written to an outputs table of that
database (``tables.py``) in that same transaction. A crash between that
commit and the system-database checkpoint therefore never runs the function
twice: on replay the engine finds the row here and returns it instead.
``Datasource`` (and ``AsyncDatasource``, for coroutines) is the whole
contract the engine relies on; ``outputs.SQLDatasource`` implements most of
it in SQL.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from contextlib import asynccontextmanager, contextmanager
from typing import (
    Any,
    AsyncContextManager,
    AsyncIterator,
    ContextManager,
    Iterator,
    Literal,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
)

from .._serialization import Serializer
from .levels import IsolationLevel, check_level
from .steps import TransactionSteps, opened_session
from .tables import DATASOURCE_OUTPUTS, TRANSACTION_OUTPUTS, Outcome, OutputsTable

Dialect = Literal["postgresql", "sqlite"]
Row = Tuple[Any, ...]
Recorded = Optional[Tuple[Optional[str], Optional[str]]]
D = TypeVar("D", bound="Datasource")

# How long a thread waits for a free connection of a pool opened from a URL.
POOL_TIMEOUT_S = 30.0


class Recording(TransactionSteps):
    """What every datasource records outputs with: its table, schema and serializer."""

    outputs_table: OutputsTable = TRANSACTION_OUTPUTS
    # The serializer of recorded outputs; None: the one DBOS is configured with.
    serializer: Optional[Serializer] = None
    schema: Optional[str] = "dbos"


class Datasource(Recording, ABC):
    """The application's database, as transactions see it.

    Subclasses say how to open a transaction (``_begin``) and how to read and
    write the recorded outcome of a step in it. ``create(...)`` datasources
    record in ``datasource_outputs``; ones given to the configuration for
    ``@DBOS.transaction`` in ``transaction_outputs``.
    """

    @contextmanager
    def begin(self, isolation_level: IsolationLevel) -> Iterator[Any]:
        """A transaction at that level, yielding the session user code works with
        (also what ``sql_session()`` returns inside it).

        Commits on normal exit; on an exception rolls back and re-raises it.
        """
        check_level(isolation_level)
        with self._begin(isolation_level) as session, opened_session(self, session):
            yield session

    @abstractmethod
    def _begin(self, isolation_level: IsolationLevel) -> ContextManager[Any]:
        """``begin`` for a level already checked."""

    @abstractmethod
    def ensure_schema(self) -> None:
        """Create the outputs table if it is missing; safe to repeat and to race."""

    @abstractmethod
    def recorded_output(self, session: Any, workflow_id: str, step_id: int) -> Recorded:
        """The (output, error) text recorded for that step, or None."""

    @abstractmethod
    def record_output(self, session: Any, outcome: Outcome) -> None:
        """Record a step's outcome inside the session's current transaction.

        ``outcome`` holds workflow_id, step_id, name, output, error,
        executor_id and serialization; the table keeps those it has columns for.
        """

    @abstractmethod
    def is_retryable(self, exc: BaseException) -> bool:
        """Whether running the whole transaction again may well succeed."""

    def delete_outputs(self, workflow_ids: Sequence[str]) -> None:
        """Forget the recorded outputs of deleted workflows (none kept: nothing to do)."""

    def close(self) -> None:
        """Release the connections this datasource opened itself."""

    def _prepared(self: D, schema: Optional[str], serializer: Optional[Serializer]) -> D:
        """What every ``create(...)`` ends with: record in ``datasource_outputs``
        (in ``schema``, if given), with ``serializer``, the table made if missing."""
        self.outputs_table = DATASOURCE_OUTPUTS
        if schema is not None:
            self.schema = schema
        self.serializer = serializer
        self.ensure_schema()
        return self


class AsyncDatasource(Recording, ABC):
    """A datasource whose transactions are coroutines (``AsyncSQLAlchemyDatasource``)."""

    is_async = True

    @asynccontextmanager
    async def begin(self, isolation_level: IsolationLevel) -> AsyncIterator[Any]:
        """``Datasource.begin`` for coroutines: ``async with ds.begin(level) as session``."""
        check_level(isolation_level)
        async with self._begin(isolation_level) as session:
            with opened_session(self, session):
                yield session

    @abstractmethod
    def _begin(self, isolation_level: IsolationLevel) -> AsyncContextManager[Any]:
        """``begin`` for a level already checked."""

    @abstractmethod
    async def recorded_output(self, session: Any, workflow_id: str, step_id: int) -> Recorded:
        """The (output, error) text recorded for that step, or None."""

    @abstractmethod
    async def record_output(self, session: Any, outcome: Outcome) -> None:
        """Record a step's outcome inside the session's current transaction."""

    @abstractmethod
    def is_retryable(self, exc: BaseException) -> bool:
        """Whether running the whole transaction again may well succeed."""


# The datasources a configuration may name (``application_datasource``).
DATASOURCE_KINDS = ("peewee", "sqlalchemy")


def default_kind() -> str:
    """SQLAlchemy where it is installed: DBOS Transact programs (which always
    have it) then find ``DBOS.sql_session`` to be a SQLAlchemy session."""
    return "sqlalchemy" if importlib.util.find_spec("sqlalchemy") is not None else "peewee"
