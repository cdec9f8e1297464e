"""Workflow handles: wait for a workflow's result or read its status.

Inside a workflow, waiting for another workflow's result is itself
checkpointed (as ``DBOS.getResult``) so a replay returns the same outcome.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import Future
from dataclasses import replace
from typing import Any, Callable, Generic, Optional, Tuple, TypeVar

from .context import WorkflowRun, current_run
from .engine import Engine, get_engine
from ..error import DBOSNonExistentWorkflowError
from .introspection import workflow_status, workflow_status_async
from .._status import WorkflowStatus
from .._sysdb.records import StepRecord, StepWrite
from .workflow import checkpoint_step, GET_RESULT, outcome_value, replayed, wait_outcome

R = TypeVar("R")


def _engine() -> Engine:
    return get_engine("A workflow handle")


def polled_result(workflow_id: str, polling_interval_sec: float = 1.0) -> Any:
    """Wait for the workflow's recorded outcome; return or raise it."""
    engine = _engine()
    outcome = wait_outcome(engine, workflow_id, polling_interval_sec)
    return outcome_value(engine, workflow_id, outcome)


def checkpointed_result(workflow_id: str, wait: Callable[[], Any]) -> Any:
    """Run ``wait()`` for a result; inside a workflow, record (or replay) it."""
    run = current_run()
    if run is None:
        return wait()
    function_id, record = _reserve(run)
    if record is not None:
        return replayed(_engine(), record)
    return _wait_and_record(run, function_id, workflow_id, wait)


async def checkpointed_result_async(workflow_id: str, wait: Callable[[], Any]) -> Any:
    """``checkpointed_result`` for async code: the function ID is taken before
    the first ``await``, so concurrent operations number in the order they begin."""
    run = current_run()
    engine = _engine()
    if run is None:
        return await engine.in_pool(wait)
    function_id, record = _reserve(run)
    if record is not None:
        return replayed(engine, record)
    return await engine.in_pool(_wait_and_record, run, function_id, workflow_id, wait)


def _reserve(run: WorkflowRun) -> Tuple[int, Optional[StepRecord]]:
    function_id = run.next_function_id()
    return function_id, run.recorded_step(function_id, GET_RESULT)


def _wait_and_record(run: WorkflowRun, function_id: int, workflow_id: str,
                     wait: Callable[[], Any]) -> Any:
    engine = _engine()
    write = StepWrite(run.workflow_id, function_id, GET_RESULT, child_workflow_id=workflow_id)
    try:
        value = wait()
    except Exception as exc:
        checkpoint_step(engine, replace(write, error=engine.codec.dump_error(exc)))
        raise
    output = engine.codec.dump_value(value, what=f"the result of workflow {workflow_id}")
    checkpoint_step(engine, replace(write, output=output))
    return value



def read_status(workflow_id: str) -> Optional[WorkflowStatus]:
    return workflow_status(_engine(), workflow_id)


def _existing(workflow_id: str, status: Optional[WorkflowStatus]) -> WorkflowStatus:
    if status is None:
        raise DBOSNonExistentWorkflowError("workflow", workflow_id)
    return status


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
        return _existing(self.workflow_id, read_status(self.workflow_id))

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
