"""Starting workflows in the background and finding them again."""

from __future__ import annotations

import asyncio
import threading
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Tuple

from .context import WorkflowRun, current_run
from .engine import Engine, get_engine
from ..error import DBOSNonExistentWorkflowError, DBOSWorkflowFunctionNotFoundError
from .handles import (
    WorkflowHandle,
    WorkflowHandleAsync,
    checkpointed_result,
    checkpointed_result_async,
    polled_result,
    read_status,
)
from .introspection import workflow_status_async
from .recovery import split_bound, submit
from .registry import FunctionInfo
from .._status import ACTIVE_STATUSES
from .._sysdb.records import StepRecord, StepWrite
from .workflow import (
    checkpoint_step,
    check_same_function,
    execute_async,
    execute_sync,
    prepare,
    replayed,
)

WAIT_FIRST = "DBOS.waitFirst"


def resolve(func: Callable[..., Any]) -> Tuple[FunctionInfo, Tuple[Any, ...]]:
    """The workflow to start for ``func``, and the object a bound method carries."""
    base, bound = split_bound(func)
    info = getattr(base, "__dbos_info__", None)
    if not isinstance(info, FunctionInfo):
        name = getattr(func, "__qualname__", repr(func))
        raise DBOSWorkflowFunctionNotFoundError(
            "<none>", f"{name} is not decorated with @DBOS.workflow(), @DBOS.step() or @DBOS.transaction()"
        )
    if info.kind != "workflow":
        info = info.options["temp"]
    return info, bound


def start_workflow(func: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> WorkflowHandle[Any]:
    info, bound = resolve(func)
    engine = get_engine("DBOS.start_workflow()")
    launch = prepare(engine, info, bound + args, kwargs, direct=False)
    found = engine.sysdb.workflows.start(launch.row, launch.link)
    if not found.created:
        check_same_function(launch, found)
        return WorkflowHandle(launch.workflow_id)
    return submit(engine, launch, launch.new_run())


async def start_workflow_async(func: Callable[..., Any], args: Tuple[Any, ...],
                               kwargs: Dict[str, Any]) -> WorkflowHandleAsync[Any]:
    info, bound = resolve(func)
    engine = get_engine("DBOS.start_workflow_async()")
    launch = prepare(engine, info, bound + args, kwargs, direct=False)
    found = await engine.in_pool(engine.sysdb.workflows.start, launch.row, launch.link)
    if not found.created:
        check_same_function(launch, found)
        return WorkflowHandleAsync(launch.workflow_id)
    run = launch.new_run()
    if info.is_async:
        task: "asyncio.Future[Any]" = asyncio.ensure_future(execute_async(engine, launch, run))
    else:
        task = asyncio.wrap_future(engine.pool.submit(execute_sync, engine, launch, run))
    engine.keep(task)
    return WorkflowHandleAsync(launch.workflow_id, task)


def retrieve_workflow(workflow_id: str, existing_workflow: bool = True) -> WorkflowHandle[Any]:
    get_engine("DBOS.retrieve_workflow()")
    if existing_workflow and read_status(workflow_id) is None:
        raise DBOSNonExistentWorkflowError("target workflow", workflow_id)
    return WorkflowHandle(workflow_id)


async def retrieve_workflow_async(workflow_id: str, existing_workflow: bool = True) -> WorkflowHandleAsync[Any]:
    engine = get_engine("DBOS.retrieve_workflow_async()")
    if existing_workflow and await workflow_status_async(engine, workflow_id) is None:
        raise DBOSNonExistentWorkflowError("target workflow", workflow_id)
    return WorkflowHandleAsync(workflow_id)


def get_result(workflow_id: str, polling_interval_sec: float = 1.0) -> Any:
    get_engine("DBOS.get_result()")
    return checkpointed_result(workflow_id, partial(polled_result, workflow_id, polling_interval_sec))


async def get_result_async(workflow_id: str, polling_interval_sec: float = 1.0) -> Any:
    get_engine("DBOS.get_result_async()")
    wait = partial(polled_result, workflow_id, polling_interval_sec)
    return await checkpointed_result_async(workflow_id, wait)


def wait_first(handles: List[Any], polling_interval_sec: float = 1.0) -> Any:
    """The first of ``handles`` whose workflow is no longer active."""
    ids = _distinct_ids(handles)
    engine = get_engine("DBOS.wait_first()")
    run = current_run()
    if run is None:
        return handles[ids.index(_first_done(engine, ids, polling_interval_sec))]
    function_id, record = _reserve(run)
    if record is not None:
        return handles[ids.index(replayed(engine, record))]
    return handles[ids.index(_record_first(engine, run, function_id, ids, polling_interval_sec))]


async def wait_first_async(handles: List[Any], polling_interval_sec: float = 1.0) -> Any:
    """``wait_first`` for async code: the function ID is taken before the first ``await``."""
    ids = _distinct_ids(handles)
    engine = get_engine("DBOS.wait_first_async()")
    run = current_run()
    if run is None:
        winner = await engine.in_pool(_first_done, engine, ids, polling_interval_sec)
        return handles[ids.index(winner)]
    function_id, record = _reserve(run)
    if record is not None:
        return handles[ids.index(replayed(engine, record))]
    winner = await engine.in_pool(_record_first, engine, run, function_id, ids, polling_interval_sec)
    return handles[ids.index(winner)]


def _distinct_ids(handles: List[Any]) -> List[str]:
    ids = [h.workflow_id for h in handles]
    if not ids:
        raise ValueError("DBOS.wait_first() needs at least one handle")
    if len(set(ids)) != len(ids):
        raise ValueError(f"DBOS.wait_first() was given the same workflow twice: {ids}")
    return ids


def _reserve(run: WorkflowRun) -> Tuple[int, Optional[StepRecord]]:
    function_id = run.next_function_id()
    return function_id, run.recorded_step(function_id, WAIT_FIRST)


def _record_first(engine: Engine, run: WorkflowRun, function_id: int, ids: List[str],
                  polling_interval_sec: float) -> str:
    winner = _first_done(engine, ids, polling_interval_sec)
    output = engine.codec.dump_value(winner, what="the winner of DBOS.wait_first()")
    write = StepWrite(run.workflow_id, function_id, WAIT_FIRST, output=output)
    checkpoint_step(engine, write)
    return winner


def _first_done(engine: Engine, ids: List[str], polling_interval_sec: float) -> str:
    event = threading.Event()
    for workflow_id in ids:
        engine.waiters.register(workflow_id, event)
    try:
        while True:
            statuses = engine.sysdb.workflows.statuses(ids)
            for workflow_id in ids:
                if statuses.get(workflow_id, "PENDING") not in ACTIVE_STATUSES:
                    return workflow_id
            event.wait(polling_interval_sec)
            event.clear()
    finally:
        for workflow_id in ids:
            engine.waiters.unregister(workflow_id, event)
