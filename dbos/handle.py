"""Workflow handles: wait for a workflow's result or read its status.

Inside a workflow, waiting for another workflow's result is itself
checkpointed (as ``DBOS.getResult``) so a replay returns the same outcome.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import Any, Generic, Optional, TypeVar

from .context import current_run
from .engine import Engine, get_engine
from .error import DBOSNonExistentWorkflowError
from .status import WorkflowStatus
from .sysdb.records import StepWrite
from .workflow import GET_RESULT, outcome_value, raise_if_cancelled, replayed, wait_outcome

R = TypeVar("R")


def _engine() -> Engine:
    return get_engine("A workflow handle")


def checkpointed_result(workflow_id: str, wait: Any) -> Any:
    """Run ``wait()`` for a result; inside a workflow, record (or replay) it."""
    run = current_run()
    if run is None:
        return wait()
    engine = _engine()
    function_id = run.next_function_id()
    record = run.recorded_step(function_id, GET_RESULT)
    if record is not None:
        return replayed(engine, record)
    write = StepWrite(run.workflow_id, function_id, GET_RESULT, child_workflow_id=workflow_id)
    try:
        value = wait()
    except Exception as exc:
        error = engine.codec.dump_error(exc)
        _checkpoint(engine, run, StepWrite(**{**write.__dict__, "error": error}))
        raise
    output = engine.codec.dump_value(value, what=f"the result of workflow {workflow_id}")
    _checkpoint(engine, run, StepWrite(**{**write.__dict__, "output": output}))
    return value


def _checkpoint(engine: Engine, run: Any, write: StepWrite) -> None:
    raise_if_cancelled(run, engine.sysdb.workflows.checkpoint(write))


def read_status(workflow_id: str) -> Optional[WorkflowStatus]:
    from .introspection import workflow_status

    return workflow_status(_engine(), workflow_id)


class WorkflowHandle(Generic[R]):
    """A handle that polls the system database (retrieve, recovery, other processes)."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id

    def get_workflow_id(self) -> str:
        return self.workflow_id

    def get_result(self, *, polling_interval_sec: float = 1.0) -> R:
        def wait() -> Any:
            engine = _engine()
            outcome = wait_outcome(engine, self.workflow_id, polling_interval_sec)
            return outcome_value(engine, self.workflow_id, outcome)

        result: R = checkpointed_result(self.workflow_id, wait)
        return result

    def get_status(self) -> WorkflowStatus:
        status = read_status(self.workflow_id)
        if status is None:
            raise DBOSNonExistentWorkflowError("workflow", self.workflow_id)
        return status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.workflow_id!r})"


class WorkflowHandleFuture(WorkflowHandle[R]):
    """A handle to a workflow this process is running: waits on its future."""

    def __init__(self, workflow_id: str, future: "Future[R]") -> None:
        super().__init__(workflow_id)
        self._future = future

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
        if current_run() is not None or self._task is None:
            return await asyncio.to_thread(self._polling_result, polling_interval_sec)
        return await asyncio.shield(self._task)

    def _polling_result(self, polling_interval_sec: float) -> R:
        result: R = WorkflowHandle[R](self.workflow_id).get_result(
            polling_interval_sec=polling_interval_sec
        )
        return result

    async def get_status(self) -> WorkflowStatus:
        return await asyncio.to_thread(WorkflowHandle[R](self.workflow_id).get_status)

    def __repr__(self) -> str:
        return f"WorkflowHandleAsync({self.workflow_id!r})"
