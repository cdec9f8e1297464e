"""Workflow management on the ``DBOS`` class: list, inspect, cancel, resume,
fork, delete and collect, each with an ``_async`` twin.

Inside a workflow each call is a checkpointed step (so a replay sees what the
first execution saw, and a fork or resume happens once); inside a
transaction each is refused.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, TypeVar

from .._engine.context import get_context
from .._engine.engine import Engine, get_engine
from ..error import DBOSException
from .._engine.handles import WorkflowHandle, WorkflowHandleAsync
from .._ops.management import Operations, StepInfo
from .._queues.queue import INTERNAL_QUEUE
from .._status import WorkflowStatus
from .._engine.workflow import recorded_operation, recorded_operation_async

T = TypeVar("T")

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
    """Management of the launched engine's system database, as this app."""
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

    def delete(self, workflow_ids: List[str], delete_children: bool) -> None:
        self.ops.delete(workflow_ids, delete_children)

    def global_timeout(self, cutoff_epoch_timestamp_ms: int) -> None:
        for workflow_id in self.ops.global_timeout(cutoff_epoch_timestamp_ms):
            self.engine.mark_cancelled(workflow_id)

    def fork(self, workflow_id: str, start_step: int, new_id: Optional[str],
             options: Dict[str, Any]) -> str:
        forked = self.ops.fork(workflow_id, start_step, new_workflow_id=new_id, **options)
        self.engine.queue_work_arrived(options.get("queue_name") or INTERNAL_QUEUE)
        return forked


def _run(what: str, step: str, work: Callable[[_Work], T]) -> T:
    """``work`` on the launched engine; a checkpointed step inside a workflow."""
    bound = _Work(get_engine(what))
    return recorded_operation(bound.engine, step, lambda: work(bound))


async def _run_async(what: str, step: str, work: Callable[[_Work], T]) -> T:
    bound = _Work(get_engine(what))
    return await recorded_operation_async(bound.engine, step, lambda: work(bound))


class ManagementAPI:
    """Mixed into ``DBOS``: the management calls of DBOS Transact's API."""

    @classmethod
    def list_workflows(cls, **filters: Any) -> List[WorkflowStatus]:
        """Workflows matching every filter given (see the README for the list)."""
        check_filters("DBOS.list_workflows()", filters, LIST_FILTERS)
        return _run("DBOS.list_workflows()", LIST_WORKFLOWS, lambda w: w.ops.list_workflows(filters))

    @classmethod
    async def list_workflows_async(cls, **filters: Any) -> List[WorkflowStatus]:
        check_filters("DBOS.list_workflows_async()", filters, LIST_FILTERS)
        return await _run_async("DBOS.list_workflows_async()", LIST_WORKFLOWS,
                                lambda w: w.ops.list_workflows(filters))

    @classmethod
    def list_queued_workflows(cls, **filters: Any) -> List[WorkflowStatus]:
        """Workflows waiting in, or running from, a queue."""
        check_filters("DBOS.list_queued_workflows()", filters, QUEUED_FILTERS)
        return _run("DBOS.list_queued_workflows()", LIST_QUEUED,
                    lambda w: w.ops.list_queued_workflows(filters))

    @classmethod
    async def list_queued_workflows_async(cls, **filters: Any) -> List[WorkflowStatus]:
        check_filters("DBOS.list_queued_workflows_async()", filters, QUEUED_FILTERS)
        return await _run_async("DBOS.list_queued_workflows_async()", LIST_QUEUED,
                                lambda w: w.ops.list_queued_workflows(filters))

    @classmethod
    def list_workflow_steps(cls, workflow_id: str, *, load_output: bool = True,
                            limit: Optional[int] = None, offset: Optional[int] = None) -> List[StepInfo]:
        """Every operation the workflow recorded, in order."""
        return _run("DBOS.list_workflow_steps()", LIST_STEPS,
                    lambda w: w.ops.list_workflow_steps(workflow_id, load_output, limit, offset))

    @classmethod
    async def list_workflow_steps_async(cls, workflow_id: str, *, load_output: bool = True,
                                        limit: Optional[int] = None,
                                        offset: Optional[int] = None) -> List[StepInfo]:
        return await _run_async("DBOS.list_workflow_steps_async()", LIST_STEPS,
                                lambda w: w.ops.list_workflow_steps(workflow_id, load_output, limit, offset))

    @classmethod
    def cancel_workflow(cls, workflow_id: str, *, cancel_children: bool = False) -> None:
        """Cancel a workflow: it stops at its next DBOS call and stays cancelled."""
        cls.cancel_workflows([workflow_id], cancel_children=cancel_children)

    @classmethod
    async def cancel_workflow_async(cls, workflow_id: str, *, cancel_children: bool = False) -> None:
        await cls.cancel_workflows_async([workflow_id], cancel_children=cancel_children)

    @classmethod
    def cancel_workflows(cls, workflow_ids: List[str], *, cancel_children: bool = False) -> None:
        _run("DBOS.cancel_workflows()", CANCEL, lambda w: w.cancel(list(workflow_ids), cancel_children))

    @classmethod
    async def cancel_workflows_async(cls, workflow_ids: List[str], *,
                                     cancel_children: bool = False) -> None:
        await _run_async("DBOS.cancel_workflows_async()", CANCEL,
                         lambda w: w.cancel(list(workflow_ids), cancel_children))

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
        ids = _run("DBOS.resume_workflows()", RESUME, lambda w: w.resume(list(workflow_ids), queue_name))
        return [WorkflowHandle(w) for w in ids]

    @classmethod
    async def resume_workflows_async(cls, workflow_ids: List[str], *,
                                     queue_name: Optional[str] = None) -> List[WorkflowHandleAsync[Any]]:
        ids = await _run_async("DBOS.resume_workflows_async()", RESUME,
                               lambda w: w.resume(list(workflow_ids), queue_name))
        return [WorkflowHandleAsync(w) for w in ids]

    @classmethod
    def fork_workflow(cls, workflow_id: str, start_step: int, *,
                      application_version: Optional[str] = None, queue_name: Optional[str] = None,
                      queue_partition_key: Optional[str] = None,
                      replacement_children: Optional[Dict[str, str]] = None,
                      timeout_seconds: Optional[float] = None) -> WorkflowHandle[Any]:
        """A new workflow that keeps the original's steps before ``start_step`` and
        runs the rest again (``start_step=1``: from the beginning)."""
        options = dict(application_version=application_version, queue_name=queue_name,
                       queue_partition_key=queue_partition_key,
                       replacement_children=replacement_children, timeout_seconds=timeout_seconds)
        new_id = new_fork_id()
        return WorkflowHandle(_run("DBOS.fork_workflow()", FORK,
                                   lambda w: w.fork(workflow_id, start_step, new_id, options)))

    @classmethod
    async def fork_workflow_async(cls, workflow_id: str, start_step: int, *,
                                  application_version: Optional[str] = None,
                                  queue_name: Optional[str] = None,
                                  queue_partition_key: Optional[str] = None,
                                  replacement_children: Optional[Dict[str, str]] = None,
                                  timeout_seconds: Optional[float] = None) -> WorkflowHandleAsync[Any]:
        options = dict(application_version=application_version, queue_name=queue_name,
                       queue_partition_key=queue_partition_key,
                       replacement_children=replacement_children, timeout_seconds=timeout_seconds)
        new_id = new_fork_id()
        return WorkflowHandleAsync(await _run_async(
            "DBOS.fork_workflow_async()", FORK, lambda w: w.fork(workflow_id, start_step, new_id, options)))

    @classmethod
    def delete_workflow(cls, workflow_id: str, *, delete_children: bool = False) -> None:
        """Delete a workflow and everything it recorded. Irreversible."""
        cls.delete_workflows([workflow_id], delete_children=delete_children)

    @classmethod
    async def delete_workflow_async(cls, workflow_id: str, *, delete_children: bool = False) -> None:
        await cls.delete_workflows_async([workflow_id], delete_children=delete_children)

    @classmethod
    def delete_workflows(cls, workflow_ids: List[str], *, delete_children: bool = False) -> None:
        _run("DBOS.delete_workflows()", DELETE, lambda w: w.delete(list(workflow_ids), delete_children))

    @classmethod
    async def delete_workflows_async(cls, workflow_ids: List[str], *,
                                     delete_children: bool = False) -> None:
        await _run_async("DBOS.delete_workflows_async()", DELETE,
                         lambda w: w.delete(list(workflow_ids), delete_children))

    @classmethod
    def garbage_collect(cls, *, cutoff_epoch_timestamp_ms: Optional[int] = None,
                        rows_threshold: Optional[int] = None) -> int:
        """Delete finished workflows created before the cutoff, or all but the newest
        ``rows_threshold``; return how many were deleted. Active ones are kept."""
        if cutoff_epoch_timestamp_ms is None and rows_threshold is None:
            raise DBOSException("garbage_collect needs cutoff_epoch_timestamp_ms or rows_threshold")
        return _run("DBOS.garbage_collect()", GARBAGE_COLLECT,
                    lambda w: w.ops.garbage_collect(cutoff_epoch_timestamp_ms, rows_threshold))

    @classmethod
    def global_timeout(cls, cutoff_epoch_timestamp_ms: int) -> None:
        """Cancel every active workflow created at or before the cutoff."""
        _run("DBOS.global_timeout()", GLOBAL_TIMEOUT, lambda w: w.global_timeout(cutoff_epoch_timestamp_ms))
