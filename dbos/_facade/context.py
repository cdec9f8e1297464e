"""``DBOS``'s view of the running context: which workflow and step, which caller."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional

from .._engine.context import DBOSContext, get_context
from .._engine.engine import get_engine
from .._status import StepStatus
from ..error import DBOSException
from .classproperty import classproperty

if TYPE_CHECKING:
    from ..contrib.otel import DBOSTracer


class ContextAPI:
    @classproperty
    def app_datasource(cls) -> Any:
        """The application database's datasource (``.database`` for Peewee);
        ``DBOSException`` without one."""
        engine = get_engine("DBOS.app_datasource")
        if engine.datasource is None:
            raise DBOSException(
                "No application database: set application_database_url or "
                "application_datasource in the configuration"
            )
        return engine.datasource

    @classproperty
    def workflow_id(cls) -> Optional[str]:
        """The ID of the workflow running here; None outside one."""
        ctx = get_context()
        return ctx.run.workflow_id if ctx is not None and ctx.run is not None else None

    @classproperty
    def step_id(cls) -> Optional[int]:
        """The function ID of the step running here; None outside one."""
        ctx = get_context()
        return ctx.step_id if ctx is not None else None

    @classproperty
    def step_status(cls) -> Optional[StepStatus]:
        """The step running here, with its attempt; None outside one."""
        ctx = get_context()
        return ctx.step_status if ctx is not None else None

    @classproperty
    def sql_session(cls) -> Any:
        """The session of the running transaction (a Peewee database, a DB-API
        connection...); ``AssertionError`` outside a transaction."""
        ctx = get_context()
        if ctx is None or not ctx.in_transaction:
            raise AssertionError("DBOS.sql_session is only available inside a @DBOS.transaction()")
        return ctx.sql_session

    @classproperty
    def span(cls) -> Any:
        """The active OpenTelemetry span (DBOS's or the application's); None without
        one or without OpenTelemetry (``AssertionError`` without a DBOS context)."""
        _require_context("DBOS.span")
        from ..contrib.otel import current_span  # OpenTelemetry only when asked for

        return current_span()

    @classproperty
    def tracer(cls) -> "DBOSTracer":
        """DBOS's OpenTelemetry tracer (its spans carry DBOS's attributes)."""
        from ..contrib.otel import dbos_tracer

        return dbos_tracer

    @classproperty
    def authenticated_user(cls) -> Optional[str]:
        """The user the caller authenticated as (``AssertionError`` without a context)."""
        return _require_context("DBOS.authenticated_user").authenticated_user

    @classproperty
    def authenticated_roles(cls) -> Optional[List[str]]:
        """The roles the caller holds (``AssertionError`` without a context)."""
        return _require_context("DBOS.authenticated_roles").authenticated_roles

    @classproperty
    def assumed_role(cls) -> Optional[str]:
        """The role the running function assumed (``AssertionError`` without a context)."""
        return _require_context("DBOS.assumed_role").assumed_role

    @classmethod
    def set_authentication(cls, authenticated_user: Optional[str],
                           authenticated_roles: Optional[List[str]]) -> None:
        """Set the caller's user and roles in the current context (``AssertionError`` without one)."""
        ctx = _require_context("DBOS.set_authentication()")
        ctx.authenticated_user = authenticated_user
        ctx.authenticated_roles = authenticated_roles


def _require_context(what: str) -> DBOSContext:
    ctx = get_context()
    if ctx is None:
        raise AssertionError(
            f"{what} needs a DBOS context: use it inside a workflow, step or "
            "transaction, or in a `with DBOSContextEnsure():` block"
        )
    return ctx
