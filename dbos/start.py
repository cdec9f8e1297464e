"""Starting workflows in the background and finding them again."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, Dict, List, Tuple

from .context import WorkflowRun, current_run
from .engine import Engine, get_engine
from .error import DBOSNonExistentWorkflowError, DBOSWorkflowFunctionNotFoundError
from .handle import WorkflowHandle, WorkflowHandleAsync, checkpointed_result, read_status
from .recovery import split_bound, submit
from .registry import FunctionInfo
from .status import ACTIVE_STATUSES
from .sysdb.records import StepWrite
from .workflow import (
    check_same_function,
    execute_async,
    execute_sync,
    outcome_value,
    prepare,
    raise_if_cancelled,
    replayed,
    wait_outcome,
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
    return submit(engine, launch, WorkflowRun(launch.workflow_id, info.name))


async def start_workflow_async(func: Callable[..., Any], args: Tuple[Any, ...],
                               kwargs: Dict[str, Any]) -> WorkflowHandleAsync[Any]:
    info, bound = resolve(func)
    engine = get_engine("DBOS.start_workflow_async()")
    launch = prepare(engine, info, bound + args, kwargs, direct=False)
    found = await asyncio.to_thread(engine.sysdb.workflows.start, launch.row, launch.link)
    if not found.created:
        check_same_function(launch, found)
        return WorkflowHandleAsync(launch.workflow_id)
    run = WorkflowRun(launch.workflow_id, info.name)
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


def get_result(workflow_id: str, polling_interval_sec: float = 1.0) -> Any:
    engine = get_engine("DBOS.get_result()")

    def wait() -> Any:
        outcome = wait_outcome(engine, workflow_id, polling_interval_sec)
        return outcome_value(engine, workflow_id, outcome)

    return checkpointed_result(workflow_id, wait)


def wait_first(handles: List[Any], polling_interval_sec: float = 1.0) -> Any:
    """The first of ``handles`` whose workflow is no longer active."""
    ids = [h.workflow_id for h in handles]
    if not ids:
        raise ValueError("DBOS.wait_first() needs at least one handle")
    if len(set(ids)) != len(ids):
        raise ValueError(f"DBOS.wait_first() was given the same workflow twice: {ids}")
    engine = get_engine("DBOS.wait_first()")
    run = current_run()
    if run is None:
        return handles[ids.index(_first_done(engine, ids, polling_interval_sec))]
    function_id = run.next_function_id()
    record = run.recorded_step(function_id, WAIT_FIRST)
    winner = replayed(engine, record) if record else _first_done(engine, ids, polling_interval_sec)
    if record is None:
        output = engine.codec.dump_value(winner, what="the winner of DBOS.wait_first()")
        write = StepWrite(run.workflow_id, function_id, WAIT_FIRST, output=output)
        raise_if_cancelled(run, engine.sysdb.workflows.checkpoint(write))
    return handles[ids.index(winner)]


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
