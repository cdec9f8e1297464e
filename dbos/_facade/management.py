"""``DBOS``'s workflow management: list, inspect, cancel, resume, fork, delete
and collect, each with an ``_async`` twin.

Each call is ``EngineManagement``'s (``_ops``). Inside a workflow each is an
operation (``operation.py``), so a replay sees what the first execution saw
and a fork or resume happens once; inside a transaction each is refused.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, TypeVar

from .._engine.attributes import attributes_text
from .._engine.context import get_context, take_next_workflow_id
from .._engine.engine import get_engine
from .._engine.handles import WorkflowHandle, WorkflowHandleAsync
from .._engine.operation import durable, durable_async
from .._ops.filters import LIST_FILTERS, QUEUED_FILTERS, check_filters, with_filters
from .._ops.management import EngineManagement, StepInfo, delay_until
from .._status import WorkflowStatus
from .._sysdb.outage import new_work
from ..error import DBOSException

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
UPDATE_ATTRIBUTES = "DBOS.updateWorkflowAttributes"
SET_DELAY = "DBOS.setWorkflowDelay"


def _run(what: str, name: str, work: Callable[[EngineManagement], T]) -> T:
    """``work`` on the launched engine; an operation inside a workflow."""
    manage = _management(what, name)
    with new_work(_outside_workflows()):
        return durable(manage.engine, name, lambda: work(manage), what=f"the result of {name}")


async def _run_async(what: str, name: str, work: Callable[[EngineManagement], T]) -> T:
    manage = _management(what, name)
    with new_work(_outside_workflows()):
        return await durable_async(manage.engine, name, lambda: work(manage), what=f"the result of {name}")


def _outside_workflows() -> bool:
    """Whether a management call is the caller's own request, which gives up
    during a long outage, rather than a workflow's, which waits it out."""
    ctx = get_context()
    return ctx is None or ctx.run is None


def _management(what: str, name: str) -> EngineManagement:
    manage = EngineManagement(get_engine(what))
    ctx = get_context()
    if ctx is not None and ctx.in_transaction:
        raise DBOSException(f"{name} cannot be called from within a transaction")
    return manage


def _resume(manage: EngineManagement, workflow_ids: List[str], queue_name: Optional[str]) -> List[str]:
    """Every ID asked for: each gets a handle, whether it was re-enqueued or had finished."""
    manage.resume(list(workflow_ids), queue_name)
    return list(workflow_ids)


def _none(_: object) -> None:
    """What cancel, delete and global timeout return (and record): nothing."""
    return None


class ManagementAPI:
    """Mixed into ``DBOS``: the management calls of DBOS Transact's API."""

    @classmethod
    @with_filters(LIST_FILTERS)
    def list_workflows(cls, **filters: Any) -> List[WorkflowStatus]:
        """Workflows matching every filter given (see the README for the list)."""
        check_filters("DBOS.list_workflows()", filters, LIST_FILTERS)
        return _run("DBOS.list_workflows()", LIST_WORKFLOWS, lambda m: m.list_workflows(filters))

    @classmethod
    @with_filters(LIST_FILTERS)
    async def list_workflows_async(cls, **filters: Any) -> List[WorkflowStatus]:
        """``list_workflows`` for async code."""
        check_filters("DBOS.list_workflows_async()", filters, LIST_FILTERS)
        return await _run_async("DBOS.list_workflows_async()", LIST_WORKFLOWS,
                                lambda m: m.list_workflows(filters))

    @classmethod
    @with_filters(QUEUED_FILTERS)
    def list_queued_workflows(cls, **filters: Any) -> List[WorkflowStatus]:
        """Workflows waiting in, or running from, a queue."""
        check_filters("DBOS.list_queued_workflows()", filters, QUEUED_FILTERS)
        return _run("DBOS.list_queued_workflows()", LIST_QUEUED,
                    lambda m: m.list_queued_workflows(filters))

    @classmethod
    @with_filters(QUEUED_FILTERS)
    async def list_queued_workflows_async(cls, **filters: Any) -> List[WorkflowStatus]:
        """``list_queued_workflows`` for async code."""
        check_filters("DBOS.list_queued_workflows_async()", filters, QUEUED_FILTERS)
        return await _run_async("DBOS.list_queued_workflows_async()", LIST_QUEUED,
                                lambda m: m.list_queued_workflows(filters))

    @classmethod
    def list_workflow_steps(cls, workflow_id: str, *, load_output: bool = True,
                            limit: Optional[int] = None, offset: Optional[int] = None) -> List[StepInfo]:
        """Every operation the workflow recorded, in order."""
        return _run("DBOS.list_workflow_steps()", LIST_STEPS,
                    lambda m: m.list_workflow_steps(workflow_id, load_output, limit, offset))

    @classmethod
    async def list_workflow_steps_async(cls, workflow_id: str, *, load_output: bool = True,
                                        limit: Optional[int] = None,
                                        offset: Optional[int] = None) -> List[StepInfo]:
        """``list_workflow_steps`` for async code."""
        return await _run_async("DBOS.list_workflow_steps_async()", LIST_STEPS,
                                lambda m: m.list_workflow_steps(workflow_id, load_output, limit, offset))

    @classmethod
    def cancel_workflow(cls, workflow_id: str, *, cancel_children: bool = False) -> None:
        """Cancel a workflow: it stops at its next DBOS call and stays cancelled."""
        cls.cancel_workflows([workflow_id], cancel_children=cancel_children)

    @classmethod
    async def cancel_workflow_async(cls, workflow_id: str, *, cancel_children: bool = False) -> None:
        """``cancel_workflow`` for async code."""
        await cls.cancel_workflows_async([workflow_id], cancel_children=cancel_children)

    @classmethod
    def cancel_workflows(cls, workflow_ids: List[str], *, cancel_children: bool = False) -> None:
        """Cancel workflows (with ``cancel_children``, every descendant too)."""
        _run("DBOS.cancel_workflows()", CANCEL, lambda m: _none(m.cancel(list(workflow_ids), cancel_children)))

    @classmethod
    async def cancel_workflows_async(cls, workflow_ids: List[str], *,
                                     cancel_children: bool = False) -> None:
        """``cancel_workflows`` for async code."""
        await _run_async("DBOS.cancel_workflows_async()", CANCEL,
                         lambda m: _none(m.cancel(list(workflow_ids), cancel_children)))

    @classmethod
    def resume_workflow(cls, workflow_id: str, *, queue_name: Optional[str] = None) -> WorkflowHandle[Any]:
        """Run a cancelled, dead-lettered or stuck workflow again from its last step."""
        return cls.resume_workflows([workflow_id], queue_name=queue_name)[0]

    @classmethod
    async def resume_workflow_async(cls, workflow_id: str, *,
                                    queue_name: Optional[str] = None) -> WorkflowHandleAsync[Any]:
        """``resume_workflow`` for async code."""
        return (await cls.resume_workflows_async([workflow_id], queue_name=queue_name))[0]

    @classmethod
    def resume_workflows(cls, workflow_ids: List[str], *,
                         queue_name: Optional[str] = None) -> List[WorkflowHandle[Any]]:
        """Resume workflows from their last step, on ``queue_name`` (default: the internal queue);
        ``DBOSNonExistentWorkflowError`` if one does not exist."""
        ids = _run("DBOS.resume_workflows()", RESUME, lambda m: _resume(m, workflow_ids, queue_name))
        return [WorkflowHandle(w) for w in ids]

    @classmethod
    async def resume_workflows_async(cls, workflow_ids: List[str], *,
                                     queue_name: Optional[str] = None) -> List[WorkflowHandleAsync[Any]]:
        """``resume_workflows`` for async code."""
        ids = await _run_async("DBOS.resume_workflows_async()", RESUME,
                               lambda m: _resume(m, workflow_ids, queue_name))
        return [WorkflowHandleAsync(w) for w in ids]

    @classmethod
    def fork_workflow(cls, workflow_id: str, start_step: int, *,
                      application_version: Optional[str] = None, queue_name: Optional[str] = None,
                      queue_partition_key: Optional[str] = None,
                      replacement_children: Optional[Dict[str, str]] = None,
                      timeout_seconds: Optional[float] = None) -> WorkflowHandle[Any]:
        """A new workflow that keeps the original's steps before ``start_step`` and
        runs the rest again (``start_step=1``: from the beginning)."""
        options: Dict[str, Any] = dict(application_version=application_version, queue_name=queue_name,
                                       queue_partition_key=queue_partition_key,
                                       replacement_children=replacement_children,
                                       timeout_seconds=timeout_seconds)
        new_id = take_next_workflow_id()
        return WorkflowHandle(_run("DBOS.fork_workflow()", FORK,
                                   lambda m: m.fork(workflow_id, start_step, new_workflow_id=new_id, **options)))

    @classmethod
    async def fork_workflow_async(cls, workflow_id: str, start_step: int, *,
                                  application_version: Optional[str] = None,
                                  queue_name: Optional[str] = None,
                                  queue_partition_key: Optional[str] = None,
                                  replacement_children: Optional[Dict[str, str]] = None,
                                  timeout_seconds: Optional[float] = None) -> WorkflowHandleAsync[Any]:
        """``fork_workflow`` for async code."""
        options: Dict[str, Any] = dict(application_version=application_version, queue_name=queue_name,
                                       queue_partition_key=queue_partition_key,
                                       replacement_children=replacement_children,
                                       timeout_seconds=timeout_seconds)
        new_id = take_next_workflow_id()
        return WorkflowHandleAsync(await _run_async(
            "DBOS.fork_workflow_async()", FORK, lambda m: m.fork(workflow_id, start_step, new_workflow_id=new_id, **options)))

    @classmethod
    def delete_workflow(cls, workflow_id: str, *, delete_children: bool = False) -> None:
        """Delete a workflow and everything it recorded. Irreversible."""
        cls.delete_workflows([workflow_id], delete_children=delete_children)

    @classmethod
    async def delete_workflow_async(cls, workflow_id: str, *, delete_children: bool = False) -> None:
        """``delete_workflow`` for async code."""
        await cls.delete_workflows_async([workflow_id], delete_children=delete_children)

    @classmethod
    def delete_workflows(cls, workflow_ids: List[str], *, delete_children: bool = False) -> None:
        """Delete workflows (with ``delete_children``, every descendant too) and all they recorded."""
        _run("DBOS.delete_workflows()", DELETE, lambda m: _none(m.delete(list(workflow_ids), delete_children)))

    @classmethod
    async def delete_workflows_async(cls, workflow_ids: List[str], *,
                                     delete_children: bool = False) -> None:
        """``delete_workflows`` for async code."""
        await _run_async("DBOS.delete_workflows_async()", DELETE,
                         lambda m: _none(m.delete(list(workflow_ids), delete_children)))

    @classmethod
    def garbage_collect(cls, *, cutoff_epoch_timestamp_ms: Optional[int] = None,
                        rows_threshold: Optional[int] = None) -> int:
        """Delete finished workflows created before the cutoff, or all but the newest
        ``rows_threshold``; return how many were deleted. Active ones are kept."""
        if cutoff_epoch_timestamp_ms is None and rows_threshold is None:
            raise DBOSException("garbage_collect needs cutoff_epoch_timestamp_ms or rows_threshold")
        return _run("DBOS.garbage_collect()", GARBAGE_COLLECT,
                    lambda m: m.garbage_collect(cutoff_epoch_timestamp_ms, rows_threshold))

    @classmethod
    def global_timeout(cls, cutoff_epoch_timestamp_ms: int) -> None:
        """Cancel every active workflow created at or before the cutoff."""
        _run("DBOS.global_timeout()", GLOBAL_TIMEOUT, lambda m: _none(m.global_timeout(cutoff_epoch_timestamp_ms)))

    @classmethod
    def update_workflow_attributes(cls, workflow_id: str, attributes: Optional[Dict[str, Any]]) -> None:
        """Replace the workflow's attributes (not merged; None clears them)."""
        attributes_text(attributes)  # a bad value is refused before anything is recorded
        _run("DBOS.update_workflow_attributes()", UPDATE_ATTRIBUTES,
             lambda m: m.update_attributes(workflow_id, attributes))

    @classmethod
    async def update_workflow_attributes_async(cls, workflow_id: str,
                                               attributes: Optional[Dict[str, Any]]) -> None:
        """``update_workflow_attributes`` for async code."""
        attributes_text(attributes)
        await _run_async("DBOS.update_workflow_attributes_async()", UPDATE_ATTRIBUTES,
                         lambda m: m.update_attributes(workflow_id, attributes))

    @classmethod
    def set_workflow_delay(cls, workflow_id: str, *, delay_seconds: Optional[float] = None,
                           delay_until_epoch_ms: Optional[int] = None) -> None:
        """Make a DELAYED workflow due ``delay_seconds`` from now, or at ``delay_until_epoch_ms``
        (exactly one); ``DBOSException`` if it is not DELAYED."""
        due = delay_until(delay_seconds, delay_until_epoch_ms)
        _run("DBOS.set_workflow_delay()", SET_DELAY, lambda m: m.set_delay(workflow_id, delay_until_epoch_ms=due))

    @classmethod
    async def set_workflow_delay_async(cls, workflow_id: str, *, delay_seconds: Optional[float] = None,
                                       delay_until_epoch_ms: Optional[int] = None) -> None:
        """``set_workflow_delay`` for async code."""
        due = delay_until(delay_seconds, delay_until_epoch_ms)
        await _run_async("DBOS.set_workflow_delay_async()", SET_DELAY,
                         lambda m: m.set_delay(workflow_id, delay_until_epoch_ms=due))
