"""Transactions: exactly once, by recording the output with the user's writes.

The function runs in a transaction of the application database, and its
output is inserted into that database's ``transaction_outputs`` table in the
same transaction. If the process dies after that commit and before the step
checkpoint, the replay finds the output there and does not run the function
again. Serialization failures and deadlocks are retried with backoff.
"""

from __future__ import annotations

import functools
import inspect
import logging
import random
import time
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar

from ..error import DBOSException
from .context import DBOSContext, get_context, reset_context, set_context
from .engine import Engine, get_engine
from .operation import Operation
from .registry import FunctionInfo, register_function, register_temp_workflow, wrapper_for
from .roles import assumed_role
from .workflow import call_sync

logger = logging.getLogger("dbos")

F = TypeVar("F", bound=Callable[..., Any])

FIRST_BACKOFF_SEC = 0.001
MAX_BACKOFF_SEC = 2.0


def require_datasource(engine: Engine, info: FunctionInfo) -> Any:
    if engine.datasource is None:
        raise DBOSException(
            f"Transaction {info.name} needs an application database: set "
            "application_database_url in the configuration"
        )
    return engine.datasource


def call_transaction(engine: Engine, info: FunctionInfo, args: Tuple[Any, ...],
                     kwargs: Dict[str, Any]) -> Any:
    """Run a transaction inside the current workflow (the caller made sure of one)."""
    ctx = get_context()
    if ctx is not None and ctx.step_id is not None:
        # An AssertionError, as in DBOS Transact: this is a programming error.
        raise AssertionError(
            f"Transaction {info.name} was called from inside a step or transaction; "
            "transactions must be called from within workflows"
        )
    datasource = require_datasource(engine, info)
    op = Operation.begin(engine, info.name)
    assert op is not None, "call_transaction runs inside a workflow"
    if op.replaying:
        return op.replay()
    op.check_cancelled()
    try:
        output, value = _run_until_committed(engine, datasource, info, op, args, kwargs)
    except Exception as exc:
        error = engine.codec.dump_error(exc)
        _record_error(engine, datasource, info, op, error)
        op.checkpoint(error=error)
        raise
    op.checkpoint(output=output)
    return value


def _isolation(info: FunctionInfo) -> str:
    isolation: str = info.options.get("isolation_level", "SERIALIZABLE")
    return isolation


def _record_error(engine: Engine, datasource: Any, info: FunctionInfo, op: Operation,
                  error: str) -> None:
    """Record the failure in ``transaction_outputs`` too, in a transaction of its own.

    The user's writes are already rolled back. Best effort: the step checkpoint
    that follows records the error as well, and is what replay reads first.
    """
    workflow_id = op.workflow.workflow_id
    try:
        with datasource.transaction(_isolation(info)) as session:
            if datasource.recorded_output(session, workflow_id, op.function_id) is None:
                datasource.record_output(session, workflow_id, op.function_id, info.name,
                                         None, error, engine.identity.executor_id)
    except Exception as exc:
        logger.warning(f"Could not record the error of transaction {info.name} "
                       f"in the application database: {exc}")


def _run_until_committed(engine: Engine, datasource: Any, info: FunctionInfo, op: Operation,
                         args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Tuple[Optional[str], Any]:
    delay = FIRST_BACKOFF_SEC
    while True:
        try:
            return _attempt(engine, datasource, info, op, args, kwargs)
        except Exception as exc:
            if not datasource.is_retryable(exc):
                raise
            logger.debug(f"Transaction {info.name} conflicted ({exc}); retrying")
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.5, MAX_BACKOFF_SEC)


def _attempt(engine: Engine, datasource: Any, info: FunctionInfo, op: Operation,
             args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Tuple[Optional[str], Any]:
    workflow_id = op.workflow.workflow_id
    with datasource.transaction(_isolation(info)) as session:
        done = datasource.recorded_output(session, workflow_id, op.function_id)
        if done is not None:
            output, error = done
            if error is not None:
                raise engine.codec.load_error(error)
            return output, engine.codec.load_value(output)
        value = _call_in_session(info, op, session, args, kwargs)
        output = engine.codec.dump_value(value, what=f"the output of transaction {info.name!r}")
        datasource.record_output(session, workflow_id, op.function_id, info.name,
                                 output, None, engine.identity.executor_id)
    return output, value


def _call_in_session(info: FunctionInfo, op: Operation, session: Any,
                     args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    outer = get_context() or DBOSContext()
    ctx = outer.workflow_child(op.workflow, step_id=op.function_id, in_transaction=True, sql_session=session)
    token = set_context(ctx)
    try:
        return info.func(*args, **kwargs)
    finally:
        reset_context(token)


def make_transaction(func: F, isolation_level: str, name: Optional[str]) -> F:
    """What ``@DBOS.transaction()`` makes of ``func``: exactly once, in the application database."""
    if inspect.iscoroutinefunction(func):
        raise DBOSException(
            f"Transaction {func.__qualname__} is async; @DBOS.transaction() needs a "
            "regular function (use an async step for async database work)"
        )
    info = register_function(func, name, "transaction", options={"isolation_level": isolation_level})

    def body(*args: Any, **kwargs: Any) -> Any:
        return call_transaction(get_engine(f"Transaction {info.name}"), info, args, kwargs)

    temp = register_temp_workflow(info, body)

    @functools.wraps(func)
    def transaction(*args: Any, **kwargs: Any) -> Any:
        engine = get_engine(f"Transaction {info.name}")
        with assumed_role(info):
            ctx = get_context()
            if ctx is None or ctx.run is None:
                return call_sync(engine, temp, args, kwargs)
            return call_transaction(engine, info, args, kwargs)

    return wrapper_for(info, transaction)  # type: ignore[return-value]
