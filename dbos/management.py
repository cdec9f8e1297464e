"""Workflow management on the ``DBOS`` class: list, inspect, cancel, resume,
fork, delete and collect, each with an ``_async`` twin.

Inside a workflow each call is a checkpointed step (so a replay sees what the
first execution saw, and a fork or resume happens once); inside a
transaction each is refused.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from .context import get_context
from .engine import Engine, get_engine
from .error import DBOSException
from .handle import WorkflowHandle, WorkflowHandleAsync
from .operations import Operations, StepInfo
from .queue import INTERNAL_QUEUE
from .status import WorkflowStatus
from .workflow import recorded_operation, recorded_operation_async

LIST_WORKFLOWS = "DBOS.listWorkflows"
LIST_QUEUED = "DBOS.listQueuedWorkflows"
LIST_STEPS = "DBOS.listWorkflowSteps"
CANCEL = "DBOS.cancelWorkflow"
RESUME = "DBOS.resumeWorkflow"
FORK = "DBOS.forkWorkflow"
DELETE = "DBOS.deleteWorkflow"
GARBAGE_COLLECT = "DBOS.garbageCollect"
GLOBAL_TIMEOUT = "DBOS.globalTimeout"

LIST_FILTERS = frozenset({
    "workflow_ids", "status", "start_time", "end_time", "completed_after", "completed_before",
    "dequeued_after", "dequeued_before", "name", "app_version", "forked_from",
    "parent_workflow_id", "user", "queue_name", "limit", "offset", "sort_desc",
    "workflow_id_prefix", "load_input", "load_output", "executor_id", "queues_only",
    "was_forked_from", "has_parent", "attributes", "schedule_name", "application_name",
})
QUEUED_FILTERS = LIST_FILTERS - {"queues_only", "was_forked_from", "schedule_name"}


def check_filters(what: str, filters: Dict[str, Any], allowed: frozenset[str]) -> Dict[str, Any]:
    """Refuse a misspelt filter rather than silently listing everything."""
    unknown = sorted(set(filters) - allowed)
    if unknown:
        raise TypeError(f"{what} got unexpected keyword argument(s) {', '.join(unknown)}; "
                        f"valid filters are {', '.join(sorted(allowed))}")
    return filters


def operations(engine: Engine) -> Operations:
    identity = engine.identity
    return Operations(engine.sysdb, engine.codec, identity.app_name, identity.executor_id,
                      engine.datasource)


def new_fork_id() -> Optional[str]:
    """The ID ``SetWorkflowID`` chose for the fork, if any (used once)."""
    ctx = get_context()
    return ctx.take_workflow_id() if ctx is not None else None


class _Work:
    """The blocking body of each management call, on a launched engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.ops = operations(engine)

    def cancel(self, workflow_ids: List[str], cancel_children: bool) -> None:
        self.engine.cancel(self.ops.with_children(workflow_ids, cancel_children))

    def resume(self, workflow_ids: List[str], queue_name: Optional[str]) -> List[str]:
        resumed = self.ops.resume(workflow_ids, queue_name)
        self.engine.forget_cancelled(resumed)
        self.engine.queue_work_arrived(queue_name or INTERNAL_QUEUE)
        return list(workflow_ids)

    def fork(self, workflow_id: str, start_step: int, new_id: Optional[str],
             options: Dict[str, Any]) -> str:
        forked = self.ops.fork(workflow_id, start_step, new_workflow_id=new_id, **options)
        self.engine.queue_work_arrived(options.get("queue_name") or INTERNAL_QUEUE)
        return forked


class ManagementAPI:
    """Mixed into ``DBOS``: the management calls of DBOS Transact's API."""

    @classmethod
    def list_workflows(cls, **filters: Any) -> List[WorkflowStatus]:
        """Workflows matching every filter given (see the README for the list)."""
        check_filters("DBOS.list_workflows()", filters, LIST_FILTERS)
        engine = get_engine("DBOS.list_workflows()")
        ops = operations(engine)
        return recorded_operation(engine, LIST_WORKFLOWS, lambda: ops.list_workflows(filters))

    @classmethod
    async def list_workflows_async(cls, **filters: Any) -> List[WorkflowStatus]:
        check_filters("DBOS.list_workflows_async()", filters, LIST_FILTERS)
        engine = get_engine("DBOS.list_workflows_async()")
        ops = operations(engine)
        return await recorded_operation_async(engine, LIST_WORKFLOWS, lambda: ops.list_workflows(filters))

    @classmethod
    def list_queued_workflows(cls, **filters: Any) -> List[WorkflowStatus]:
        """Workflows waiting in, or running from, a queue."""
        check_filters("DBOS.list_queued_workflows()", filters, QUEUED_FILTERS)
        engine = get_engine("DBOS.list_queued_workflows()")
        ops = operations(engine)
        return recorded_operation(engine, LIST_QUEUED, lambda: ops.list_queued_workflows(filters))

    @classmethod
    async def list_queued_workflows_async(cls, **filters: Any) -> List[WorkflowStatus]:
        check_filters("DBOS.list_queued_workflows_async()", filters, QUEUED_FILTERS)
        engine = get_engine("DBOS.list_queued_workflows_async()")
        ops = operations(engine)
        return await recorded_operation_async(engine, LIST_QUEUED, lambda: ops.list_queued_workflows(filters))

    @classmethod
    def list_workflow_steps(cls, workflow_id: str, *, load_output: bool = True,
                            limit: Optional[int] = None, offset: Optional[int] = None) -> List[StepInfo]:
        """Every operation the workflow recorded, in order."""
        engine = get_engine("DBOS.list_workflow_steps()")
        ops = operations(engine)
        return recorded_operation(
            engine, LIST_STEPS, lambda: ops.list_workflow_steps(workflow_id, load_output, limit, offset))

    @classmethod
    async def list_workflow_steps_async(cls, workflow_id: str, *, load_output: bool = True,
                                        limit: Optional[int] = None,
                                        offset: Optional[int] = None) -> List[StepInfo]:
        engine = get_engine("DBOS.list_workflow_steps_async()")
        ops = operations(engine)
        return await recorded_operation_async(
            engine, LIST_STEPS, lambda: ops.list_workflow_steps(workflow_id, load_output, limit, offset))

    @classmethod
    def cancel_workflow(cls, workflow_id: str, *, cancel_children: bool = False) -> None:
        """Cancel a workflow: it stops at its next DBOS call and stays cancelled."""
        cls.cancel_workflows([workflow_id], cancel_children=cancel_children)

    @classmethod
    async def cancel_workflow_async(cls, workflow_id: str, *, cancel_children: bool = False) -> None:
        await cls.cancel_workflows_async([workflow_id], cancel_children=cancel_children)

    @classmethod
    def cancel_workflows(cls, workflow_ids: List[str], *, cancel_children: bool = False) -> None:
        work = _Work(get_engine("DBOS.cancel_workflows()"))
        recorded_operation(work.engine, CANCEL, lambda: work.cancel(list(workflow_ids), cancel_children))

    @classmethod
    async def cancel_workflows_async(cls, workflow_ids: List[str], *,
                                     cancel_children: bool = False) -> None:
        work = _Work(get_engine("DBOS.cancel_workflows_async()"))
        await recorded_operation_async(
            work.engine, CANCEL, lambda: work.cancel(list(workflow_ids), cancel_children))

    @classmethod
    def resume_workflow(cls, workflow_id: str, *, queue_name: Optional[str] = None) -> WorkflowHandle[Any]:
        """Run a cancelled, dead-lettered or stuck workflow again from its last step."""
        return cls.resume_workflows([workflow_id], queue_name=queue_name)[0]

    @classmethod
    async def resume_workflow_async(cls, workflow_id: str, *,
                                    queue_name: Optional[str] = None) -> WorkflowHandleAsync[Any]:
        return (await cls.resume_workflows_async([workflow_id], queue_name=queue_name))[0]

    @classmethod
    def resume_workflows(cls, workflow_ids: List[str], *,
                         queue_name: Optional[str] = None) -> List[WorkflowHandle[Any]]:
        work = _Work(get_engine("DBOS.resume_workflows()"))
        ids = recorded_operation(work.engine, RESUME, lambda: work.resume(list(workflow_ids), queue_name))
        return [WorkflowHandle(w) for w in ids]

    @classmethod
    async def resume_workflows_async(cls, workflow_ids: List[str], *,
                                     queue_name: Optional[str] = None) -> List[WorkflowHandleAsync[Any]]:
        work = _Work(get_engine("DBOS.resume_workflows_async()"))
        ids = await recorded_operation_async(
            work.engine, RESUME, lambda: work.resume(list(workflow_ids), queue_name))
        return [WorkflowHandleAsync(w) for w in ids]

    @classmethod
    def fork_workflow(cls, workflow_id: str, start_step: int, *,
                      application_version: Optional[str] = None, queue_name: Optional[str] = None,
                      queue_partition_key: Optional[str] = None,
                      replacement_children: Optional[Dict[str, str]] = None,
                      timeout_seconds: Optional[float] = None) -> WorkflowHandle[Any]:
        """A new workflow that keeps the original's steps before ``start_step`` and
        runs the rest again (``start_step=1``: from the beginning)."""
        work = _Work(get_engine("DBOS.fork_workflow()"))
        options = dict(application_version=application_version, queue_name=queue_name,
                       queue_partition_key=queue_partition_key,
                       replacement_children=replacement_children, timeout_seconds=timeout_seconds)
        new_id = new_fork_id()
        forked = recorded_operation(work.engine, FORK,
                                    lambda: work.fork(workflow_id, start_step, new_id, options))
        return WorkflowHandle(forked)

    @classmethod
    async def fork_workflow_async(cls, workflow_id: str, start_step: int, *,
                                  application_version: Optional[str] = None,
                                  queue_name: Optional[str] = None,
                                  queue_partition_key: Optional[str] = None,
                                  replacement_children: Optional[Dict[str, str]] = None,
                                  timeout_seconds: Optional[float] = None) -> WorkflowHandleAsync[Any]:
        work = _Work(get_engine("DBOS.fork_workflow_async()"))
        options = dict(application_version=application_version, queue_name=queue_name,
                       queue_partition_key=queue_partition_key,
                       replacement_children=replacement_children, timeout_seconds=timeout_seconds)
        new_id = new_fork_id()
        forked = await recorded_operation_async(
            work.engine, FORK, lambda: work.fork(workflow_id, start_step, new_id, options))
        return WorkflowHandleAsync(forked)

    @classmethod
    def delete_workflow(cls, workflow_id: str, *, delete_children: bool = False) -> None:
        """Delete a workflow and everything it recorded. Irreversible."""
        cls.delete_workflows([workflow_id], delete_children=delete_children)

    @classmethod
    async def delete_workflow_async(cls, workflow_id: str, *, delete_children: bool = False) -> None:
        await cls.delete_workflows_async([workflow_id], delete_children=delete_children)

    @classmethod
    def delete_workflows(cls, workflow_ids: List[str], *, delete_children: bool = False) -> None:
        engine = get_engine("DBOS.delete_workflows()")
        ops = operations(engine)
        recorded_operation(engine, DELETE, lambda: _none(ops.delete(list(workflow_ids), delete_children)))

    @classmethod
    async def delete_workflows_async(cls, workflow_ids: List[str], *,
                                     delete_children: bool = False) -> None:
        engine = get_engine("DBOS.delete_workflows_async()")
        ops = operations(engine)
        await recorded_operation_async(
            engine, DELETE, lambda: _none(ops.delete(list(workflow_ids), delete_children)))

    @classmethod
    def garbage_collect(cls, *, cutoff_epoch_timestamp_ms: Optional[int] = None,
                        rows_threshold: Optional[int] = None) -> int:
        """Delete finished workflows created before the cutoff, or all but the newest
        ``rows_threshold``; return how many were deleted. Active ones are kept."""
        if cutoff_epoch_timestamp_ms is None and rows_threshold is None:
            raise DBOSException("garbage_collect needs cutoff_epoch_timestamp_ms or rows_threshold")
        engine = get_engine("DBOS.garbage_collect()")
        ops = operations(engine)
        return recorded_operation(
            engine, GARBAGE_COLLECT, lambda: ops.garbage_collect(cutoff_epoch_timestamp_ms, rows_threshold))

    @classmethod
    def global_timeout(cls, cutoff_epoch_timestamp_ms: int) -> None:
        """Cancel every active workflow created at or before the cutoff."""
        work = _Work(get_engine("DBOS.global_timeout()"))

        def cancel_old() -> None:
            for workflow_id in work.ops.global_timeout(cutoff_epoch_timestamp_ms):
                work.engine.mark_cancelled(workflow_id)

        recorded_operation(work.engine, GLOBAL_TIMEOUT, cancel_old)


def _none(_: Any) -> None:
    return None
