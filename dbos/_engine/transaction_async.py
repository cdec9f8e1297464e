"""Transactions of async datasources (``@ads.transaction()`` on ``async def``).

The same protocol as ``transaction.py``, awaited: the function runs in a
transaction of the application database, its output is recorded there in the
same transaction, and only then is the step checkpointed (on the engine's
pool, as every blocking system-database call from async code is).
"""

from __future__ import annotations

import asyncio
import functools
import random
from typing import Any, Awaitable, Callable, Dict, Optional, Tuple, TypeVar

from .._datasource import install_runners
from .._serialization import Codec
from .context import current_run, get_context
from .engine import Engine, get_engine
from .operation import Operation
from .tracing import span
from .transaction import (
    FIRST_BACKOFF_SEC,
    MAX_BACKOFF_SEC,
    Unit,
    in_session,
    logger,
    outcome,
    recorded,
    run_datasource_step,
)

T = TypeVar("T")


async def run_datasource_step_async(datasource: Any, name: str, isolation_level: str, func: Callable[..., Any],
                                    args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Any:
    """``@ads.transaction()``: a step of the workflow running here, else a plain transaction."""
    unit = Unit(datasource, name, isolation_level, func, args, kwargs)
    if current_run() is None:
        return await _until_committed(unit, lambda: _plain(unit))
    op = Operation.begin(get_engine(f"Transaction {name}"), name)  # before any await: IDs in call order
    assert op is not None, "a workflow runs here"
    if op.replaying:
        return op.replay()
    op.check_cancelled()
    return await _run_durably(op.engine, op, unit)


async def _run_durably(engine: Engine, op: Operation, unit: Unit) -> Any:
    codec = unit.codec(engine)
    try:
        with span(unit.name, "transaction", op.workflow.workflow_id, get_context(), engine.identity):
            output, value = await _until_committed(unit, lambda: _attempt(engine, op, unit, codec))
    except Exception as exc:
        await _record_error(engine, op, unit, codec.dump_error(exc))
        await engine.in_pool(op.fail, exc)
        raise
    if codec is engine.codec:
        await engine.in_pool(functools.partial(op.checkpoint, output=output))
    else:
        await engine.in_pool(functools.partial(op.succeed, value, what=f"the output of transaction {unit.name!r}"))
    return value


async def _record_error(engine: Engine, op: Operation, unit: Unit, error: str) -> None:
    """As ``transaction._record_error``: best effort, in a transaction of its own."""
    datasource = unit.datasource
    try:
        async with datasource.begin(unit.isolation_level) as session:
            if await datasource.recorded_output(session, op.workflow.workflow_id, op.function_id) is None:
                await datasource.record_output(session, outcome(engine, op, unit.codec(engine), None, error))
    except Exception as exc:
        logger.warning(f"Could not record the error of transaction {unit.name} "
                       f"in the application database: {exc}")


async def _until_committed(unit: Unit, attempt: Callable[[], Awaitable[T]]) -> T:
    delay = FIRST_BACKOFF_SEC
    while True:
        try:
            return await attempt()
        except Exception as exc:
            if not unit.datasource.is_retryable(exc):
                raise
            logger.debug(f"Transaction {unit.name} conflicted ({exc}); retrying")
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 1.5, MAX_BACKOFF_SEC)


async def _plain(unit: Unit) -> Any:
    async with unit.datasource.begin(unit.isolation_level):
        return await unit.func(*unit.args, **unit.kwargs)


async def _attempt(engine: Engine, op: Operation, unit: Unit, codec: Codec) -> Tuple[Optional[str], Any]:
    datasource = unit.datasource
    async with datasource.begin(unit.isolation_level) as session:
        done = await datasource.recorded_output(session, op.workflow.workflow_id, op.function_id)
        if done is not None:
            return recorded(codec, done)
        with in_session(op, session):
            value = await unit.func(*unit.args, **unit.kwargs)
        output = codec.dump_value(value, what=f"the output of transaction {unit.name!r}")
        await datasource.record_output(session, outcome(engine, op, codec, output, None))
    return output, value


def install() -> None:
    """Make ``@ds.transaction()`` of every datasource run through this engine."""
    install_runners(run_datasource_step, run_datasource_step_async)
