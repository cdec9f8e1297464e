"""Workflow handles: start a workflow in the background, find one, wait for
its result or read its status.

Inside a workflow, waiting for another workflow's result, reading a status
and ``wait_first`` are operations (``operation.py``), so a replay returns
what the first execution saw.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import Future
from typing import Any, Callable, Dict, Generic, List, Optional, Tuple, TypeVar

from .._status import ACTIVE_STATUSES, WorkflowStatus, status_from_row
from .._sysdb.ids import check_workflow_id
from .._sysdb.outage import new_work
from ..error import DBOSNonExistentWorkflowError
from .context import current_run
from .engine import Engine, get_engine
from .launch import GET_RESULT, check_same_function, prepare
from .operation import durable, durable_async
from .registry import resolve
from .waiting import Waitable, watching
from .workflow import decode_outcome, execute_async, execute_sync, submit, wait_outcome

R = TypeVar("R")

GET_STATUS = "DBOS.getStatus"
WAIT_FIRST = "DBOS.waitFirst"


def _engine() -> Engine:
    return get_engine("A workflow handle")


# ----------------------------------------------------------------------
# Results and statuses
# ----------------------------------------------------------------------


def polled_result(workflow_id: str, polling_interval_sec: float = 1.0) -> Any:
    """Wait for the workflow's recorded outcome; return or raise it."""
    engine = _engine()
    outcome = wait_outcome(engine, workflow_id, polling_interval_sec)
    return decode_outcome(engine.codec, workflow_id, outcome)


def checkpointed_result(workflow_id: str, wait: Callable[[], Any]) -> Any:
    """Run ``wait()`` for a result; inside a workflow, record (or replay) it."""
    if current_run() is None:  # a handle kept past DBOS.destroy() still waits on its future
        return wait()
    return durable(_engine(), GET_RESULT, wait, what=f"the result of workflow {workflow_id}",
                   child_workflow_id=workflow_id)


async def checkpointed_result_async(workflow_id: str, wait: Callable[[], Any]) -> Any:
    """``checkpointed_result`` for async code: the operation begins before the first ``await``."""
    return await durable_async(_engine(), GET_RESULT, wait, what=f"the result of workflow {workflow_id}",
                               child_workflow_id=workflow_id)


def workflow_status(engine: Engine, workflow_id: str) -> Optional[WorkflowStatus]:
    """The status, or None; inside a workflow the answer is checkpointed."""
    check_workflow_id(workflow_id)
    return durable(engine, GET_STATUS, lambda: _read_status(engine, workflow_id),
                   what=f"the status of workflow {workflow_id}", record_error=False)


async def workflow_status_async(engine: Engine, workflow_id: str) -> Optional[WorkflowStatus]:
    check_workflow_id(workflow_id)
    return await durable_async(engine, GET_STATUS, lambda: _read_status(engine, workflow_id),
                               what=f"the status of workflow {workflow_id}", record_error=False)


def _read_status(engine: Engine, workflow_id: str) -> Optional[WorkflowStatus]:
    row = engine.sysdb.workflow_row(workflow_id)
    return status_from_row(engine.codec, row) if row else None


def _existing(workflow_id: str, status: Optional[WorkflowStatus]) -> WorkflowStatus:
    if status is None:
        raise DBOSNonExistentWorkflowError("workflow", workflow_id)
    return status


# ----------------------------------------------------------------------
# Handles
# ----------------------------------------------------------------------


class WorkflowHandle(Generic[R]):
    """A handle that polls the system database (retrieve, recovery, other processes)."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id

    def get_workflow_id(self) -> str:
        return self.workflow_id

    def get_result(self, *, polling_interval_sec: float = 1.0) -> R:
        wait = functools.partial(polled_result, self.workflow_id, polling_interval_sec)
        result: R = checkpointed_result(self.workflow_id, wait)
        return result

    def get_status(self) -> WorkflowStatus:
        return _existing(self.workflow_id, workflow_status(_engine(), self.workflow_id))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.workflow_id!r})"


class WorkflowHandleFuture(WorkflowHandle[R]):
    """A handle to a workflow this process is running: waits on its future."""

    def __init__(self, workflow_id: str, future: "Future[R]") -> None:
        super().__init__(workflow_id)
        self._future = future

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on some thread) once the local run has ended."""
        self._future.add_done_callback(lambda _: callback())

    def add_future_callback(self, callback: Callable[["Future[R]"], None]) -> None:
        """Call ``callback`` with the local run's future (on some thread) once it has ended."""
        self._future.add_done_callback(callback)

    def get_result(self, *, polling_interval_sec: float = 1.0) -> R:
        result: R = checkpointed_result(self.workflow_id, self._future.result)
        return result


class WorkflowHandleAsync(Generic[R]):
    """The async handle: same calls, awaited."""

    def __init__(self, workflow_id: str, task: Optional["asyncio.Future[R]"] = None) -> None:
        self.workflow_id = workflow_id
        self._task = task

    def get_workflow_id(self) -> str:
        return self.workflow_id

    async def get_result(self, *, polling_interval_sec: float = 1.0) -> R:
        if current_run() is None and self._task is not None:
            return await asyncio.shield(self._task)
        wait = functools.partial(polled_result, self.workflow_id, polling_interval_sec)
        result: R = await checkpointed_result_async(self.workflow_id, wait)
        return result

    async def get_status(self) -> WorkflowStatus:
        status = await workflow_status_async(_engine(), self.workflow_id)
        return _existing(self.workflow_id, status)

    def __repr__(self) -> str:
        return f"WorkflowHandleAsync({self.workflow_id!r})"


# ----------------------------------------------------------------------
# Starting and finding workflows
# ----------------------------------------------------------------------


def start_workflow(func: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> WorkflowHandle[Any]:
    info, bound = resolve(func)
    engine = get_engine("DBOS.start_workflow()")
    launch = prepare(engine, info, bound + args, kwargs, direct=False)
    with new_work(launch.link is None):  # a top-level start may give up during an outage
        found = engine.sysdb.start_workflow(launch.row, launch.link)
    if not found.created:
        check_same_function(launch, found)
        return WorkflowHandle(launch.workflow_id)
    return WorkflowHandleFuture(launch.workflow_id, submit(engine, launch, launch.new_run()))


async def start_workflow_async(func: Callable[..., Any], args: Tuple[Any, ...],
                               kwargs: Dict[str, Any]) -> WorkflowHandleAsync[Any]:
    info, bound = resolve(func)
    engine = get_engine("DBOS.start_workflow_async()")
    launch = prepare(engine, info, bound + args, kwargs, direct=False)
    with new_work(launch.link is None):
        found = await engine.in_pool(engine.sysdb.start_workflow, launch.row, launch.link)
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
    engine = get_engine("DBOS.retrieve_workflow()")
    check_workflow_id(workflow_id)
    if existing_workflow and workflow_status(engine, workflow_id) is None:
        raise DBOSNonExistentWorkflowError("target workflow", workflow_id)
    return WorkflowHandle(workflow_id)


async def retrieve_workflow_async(workflow_id: str, existing_workflow: bool = True) -> WorkflowHandleAsync[Any]:
    engine = get_engine("DBOS.retrieve_workflow_async()")
    check_workflow_id(workflow_id)
    if existing_workflow and await workflow_status_async(engine, workflow_id) is None:
        raise DBOSNonExistentWorkflowError("target workflow", workflow_id)
    return WorkflowHandleAsync(workflow_id)


def get_result(workflow_id: str, polling_interval_sec: float = 1.0) -> Any:
    get_engine("DBOS.get_result()")
    check_workflow_id(workflow_id)
    return checkpointed_result(workflow_id, functools.partial(polled_result, workflow_id, polling_interval_sec))


async def get_result_async(workflow_id: str, polling_interval_sec: float = 1.0) -> Any:
    get_engine("DBOS.get_result_async()")
    check_workflow_id(workflow_id)
    wait = functools.partial(polled_result, workflow_id, polling_interval_sec)
    return await checkpointed_result_async(workflow_id, wait)


def wait_first(handles: List[Any], polling_interval_sec: float = 1.0) -> Any:
    """The first of ``handles`` whose workflow is no longer active."""
    ids = distinct_ids(handles, "DBOS.wait_first()")
    engine = get_engine("DBOS.wait_first()")
    winner = durable(engine, WAIT_FIRST, lambda: first_done(engine, ids, polling_interval_sec),
                     what="the winner of DBOS.wait_first()", record_error=False)
    return handles[ids.index(winner)]


async def wait_first_async(handles: List[Any], polling_interval_sec: float = 1.0) -> Any:
    """``wait_first`` for async code: the operation begins before the first ``await``."""
    ids = distinct_ids(handles, "DBOS.wait_first_async()")
    engine = get_engine("DBOS.wait_first_async()")
    winner = await durable_async(engine, WAIT_FIRST, lambda: first_done(engine, ids, polling_interval_sec),
                                 what="the winner of DBOS.wait_first()", record_error=False)
    return handles[ids.index(winner)]


def distinct_ids(handles: List[Any], api: str) -> List[str]:
    """The handles' workflow IDs; ``ValueError`` for none, or for one twice."""
    ids = [h.workflow_id for h in handles]
    if not ids:
        raise ValueError(f"{api} needs at least one handle")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{api} was given the same workflow twice: {ids}")
    return ids


def first_done(engine: Waitable, ids: List[str], polling_interval_sec: float) -> str:
    """The first of ``ids`` whose workflow is no longer active, waiting for one."""
    with watching(engine, ids, None) as watch:
        while True:
            statuses = engine.sysdb.workflow_statuses(ids)
            for workflow_id in ids:
                if statuses.get(workflow_id, "PENDING") not in ACTIVE_STATUSES:
                    return workflow_id
            watch.event.wait(polling_interval_sec)
            watch.event.clear()
