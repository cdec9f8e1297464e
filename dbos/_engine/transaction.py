"""Transactions: exactly once, by recording the output with the user's writes.

The function runs in a transaction of the application database, and its
output is inserted into that database's outputs table (``transaction_outputs``
for ``@DBOS.transaction``, ``datasource_outputs`` for ``@ds.transaction()``)
in the same transaction. If the process dies after that commit and before
the step checkpoint, the replay finds the output there and does not run the
function again. Serialization failures and deadlocks are retried with backoff.
"""

from __future__ import annotations

import functools
import inspect
import logging
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Optional, Tuple, TypeVar

from .._serialization import Codec
from ..error import DBOSException
from .context import DBOSContext, current_run, get_context, reset_context, set_context
from .engine import Engine, get_engine
from .operation import Operation
from .registry import FunctionInfo, register_function, register_temp_workflow, wrapper_for
from .roles import assumed_role
from .tracing import span
from .workflow import call_sync

logger = logging.getLogger("dbos")

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

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
    """Run a ``@DBOS.transaction`` inside the current workflow (the caller made sure of one)."""
    ctx = get_context()
    if ctx is not None and ctx.step_id is not None:
        # An AssertionError, as in DBOS Transact: this is a programming error.
        raise AssertionError(
            f"Transaction {info.name} was called from inside a step or transaction; "
            "transactions must be called from within workflows"
        )
    unit = Unit(require_datasource(engine, info), info.name, _isolation(info), info.func, args, kwargs)
    op = Operation.begin(engine, info.name)
    assert op is not None, "call_transaction runs inside a workflow"
    return run_durably(engine, op, unit)


def run_datasource_step(datasource: Any, name: str, isolation_level: str, func: Callable[..., Any],
                        args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    """``@ds.transaction()``: a step of the workflow running here, else a plain transaction."""
    unit = Unit(datasource, name, isolation_level, func, args, kwargs)
    if current_run() is None:
        return _until_committed(unit, lambda: _plain(unit))
    op = Operation.begin(get_engine(f"Transaction {name}"), name)
    assert op is not None, "a workflow runs here"
    return run_durably(op.engine, op, unit)


@dataclass
class Unit:
    """One call of a transaction function, on one datasource."""

    datasource: Any
    name: str
    isolation_level: str
    func: Callable[..., Any]
    args: Tuple[Any, ...]
    kwargs: Dict[str, Any]

    def codec(self, engine: Engine) -> Codec:
        """What outputs are recorded with in the application database."""
        serializer = getattr(self.datasource, "serializer", None)
        return engine.codec if serializer is None else Codec(serializer)


def _isolation(info: FunctionInfo) -> str:
    isolation: str = info.options.get("isolation_level", "SERIALIZABLE")
    return isolation


def run_durably(engine: Engine, op: Operation, unit: Unit) -> Any:
    """Replay the step, or run it until committed with its output; then checkpoint."""
    if op.replaying:
        return op.replay()
    op.check_cancelled()
    codec = unit.codec(engine)
    try:
        with span(unit.name, "transaction", op.workflow.workflow_id, get_context(), engine.identity):
            output, value = _until_committed(unit, lambda: _attempt(engine, op, unit, codec))
    except Exception as exc:
        _record_error(engine, op, unit, codec.dump_error(exc))
        op.fail(exc)
        raise
    if codec is engine.codec:
        op.checkpoint(output=output)
    else:
        op.succeed(value, what=f"the output of transaction {unit.name!r}")
    return value


def outcome(engine: Engine, op: Operation, codec: Codec, output: Optional[str],
            error: Optional[str]) -> Dict[str, object]:
    """What the application database records for ``op`` (see ``_datasource.tables``)."""
    return {"workflow_id": op.workflow.workflow_id, "step_id": op.function_id, "name": op.name,
            "output": output, "error": error, "executor_id": engine.identity.executor_id,
            "serialization": codec.serializer.name()}


def _record_error(engine: Engine, op: Operation, unit: Unit, error: str) -> None:
    """Record the failure in the application database too, in a transaction of its own.

    The user's writes are already rolled back. Best effort: the step checkpoint
    that follows records the error as well, and is what replay reads first.
    """
    datasource = unit.datasource
    try:
        with datasource.begin(unit.isolation_level) as session:
            if datasource.recorded_output(session, op.workflow.workflow_id, op.function_id) is None:
                datasource.record_output(session, outcome(engine, op, unit.codec(engine), None, error))
    except Exception as exc:
        logger.warning(f"Could not record the error of transaction {unit.name} "
                       f"in the application database: {exc}")


def _until_committed(unit: Unit, attempt: Callable[[], T]) -> T:
    """``attempt()`` again, after a backoff, for as long as it fails in a retryable way."""
    delay = FIRST_BACKOFF_SEC
    while True:
        try:
            return attempt()
        except Exception as exc:
            if not unit.datasource.is_retryable(exc):
                raise
            logger.debug(f"Transaction {unit.name} conflicted ({exc}); retrying")
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.5, MAX_BACKOFF_SEC)


def _plain(unit: Unit) -> Any:
    with unit.datasource.begin(unit.isolation_level):
        return unit.func(*unit.args, **unit.kwargs)


def _attempt(engine: Engine, op: Operation, unit: Unit, codec: Codec) -> Tuple[Optional[str], Any]:
    datasource = unit.datasource
    with datasource.begin(unit.isolation_level) as session:
        done = datasource.recorded_output(session, op.workflow.workflow_id, op.function_id)
        if done is not None:
            return recorded(codec, done)
        with in_session(op, session):
            value = unit.func(*unit.args, **unit.kwargs)
        output = codec.dump_value(value, what=f"the output of transaction {unit.name!r}")
        datasource.record_output(session, outcome(engine, op, codec, output, None))
    return output, value


def recorded(codec: Codec, done: Tuple[Optional[str], Optional[str]]) -> Tuple[Optional[str], Any]:
    """An outcome an earlier execution committed: its output and value, or its error raised."""
    output, error = done
    if error is not None:
        raise codec.load_error(error)
    return output, codec.load_value(output)


@contextmanager
def in_session(op: Operation, session: Any) -> Iterator[None]:
    """The context a transaction function runs in: its workflow's, at its step, with ``DBOS.sql_session``."""
    outer = get_context() or DBOSContext()
    ctx = outer.workflow_child(op.workflow, step_id=op.function_id, in_transaction=True, sql_session=session)
    token = set_context(ctx)
    try:
        yield
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
