"""``Datasource``: the application database, as ``@DBOS.transaction`` sees it.

A transaction function runs inside a transaction of the application's
database, and its serialized output is written to ``transaction_outputs`` in
that same transaction. A crash between that commit and the system-database
checkpoint therefore never runs the function twice: on replay the engine finds
the row here and returns it instead. ``Datasource`` is the whole contract the
engine relies on; ``outputs.SQLDatasource`` implements most of it in SQL.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from typing import Any, ContextManager, Literal, Optional, Sequence, Tuple, get_args

IsolationLevel = Literal["SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED"]
ISOLATION_LEVELS: Tuple[str, ...] = get_args(IsolationLevel)
Dialect = Literal["postgresql", "sqlite"]
Row = Tuple[Any, ...]

TABLE = "transaction_outputs"
INDEX = "transaction_outputs_created_at_index"
# How long a thread waits for a free connection of a pool opened from a URL.
POOL_TIMEOUT_S = 30.0


class Datasource(ABC):
    """The application's database as @DBOS.transaction sees it."""

    @abstractmethod
    def ensure_schema(self) -> None:
        """Create ``transaction_outputs`` if it is missing; safe to repeat and to race."""

    @abstractmethod
    def transaction(self, isolation_level: IsolationLevel) -> ContextManager[Any]:
        """A transaction at that level, yielding the session user code works with.

        Commits on normal exit; on an exception rolls back and re-raises it.
        """

    @abstractmethod
    def recorded_output(
        self, session: Any, workflow_id: str, function_id: int
    ) -> Optional[Tuple[Optional[str], Optional[str]]]:
        """The (output, error) text recorded for that step, or None."""

    @abstractmethod
    def record_output(
        self,
        session: Any,
        workflow_id: str,
        function_id: int,
        function_name: str,
        output: Optional[str],
        error: Optional[str],
        executor_id: Optional[str],
    ) -> None:
        """Record a step's outcome inside the session's current transaction."""

    @abstractmethod
    def is_retryable(self, exc: BaseException) -> bool:
        """Whether running the whole transaction again may well succeed."""

    def delete_outputs(self, workflow_ids: Sequence[str]) -> None:
        """Forget the recorded outputs of deleted workflows (none kept: nothing to do)."""

    def close(self) -> None:
        """Release the connections this datasource opened itself."""




# The datasources a configuration may name (``application_datasource``).
DATASOURCE_KINDS = ("peewee", "sqlalchemy")


def default_kind() -> str:
    """SQLAlchemy where it is installed: DBOS Transact programs (which always
    have it) then find ``DBOS.sql_session`` to be a SQLAlchemy session."""
    return "sqlalchemy" if importlib.util.find_spec("sqlalchemy") is not None else "peewee"
