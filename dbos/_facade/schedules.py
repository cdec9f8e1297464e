"""``DBOS``'s workflow schedules kept in the database, each with an ``_async`` twin
where DBOS Transact has one.

Each call is ``Schedules``' (``_queues/schedules.py``, shared with
``DBOSClient``). Inside a workflow, creating, listing, reading, deleting,
pausing and resuming are operations (``operation.py``) under DBOS
Transact's names, so a replay sees what the first execution saw; applying,
triggering and backfilling start or redefine work outside the workflow's
history and are refused there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, List, Optional, TypeVar, Union

from .._engine.context import current_run, get_context
from .._engine.engine import get_engine
from .._engine.handles import WorkflowHandle
from .._engine.operation import durable, durable_async
from .._queues.schedule_runner import schedules_changed
from .._queues.schedules import (
    ACTIVE,
    PAUSED,
    ScheduleDefinition,
    ScheduleInput,
    Schedules,
    WorkflowSchedule,
    definition_for,
)
from ..error import DBOSException, DBOSInvalidArgumentError

T = TypeVar("T")
Filter = Optional[Union[str, List[str]]]

CREATE = "DBOS.createSchedule"
LIST = "DBOS.listSchedules"
GET = "DBOS.getSchedule"
DELETE = "DBOS.deleteSchedule"
PAUSE = "DBOS.pauseSchedule"
RESUME = "DBOS.resumeSchedule"


def _schedules(api: str) -> Schedules:
    engine = get_engine(api)
    ctx = get_context()
    if ctx is not None and ctx.in_transaction:
        raise DBOSException(f"{api} cannot be called from within a transaction")
    return Schedules(engine.sysdb, engine.codec, engine.identity.app_name, schedules_changed)


def _run(api: str, name: str, work: Callable[[Schedules], T]) -> T:
    """``work`` on this application's schedules; an operation inside a workflow."""
    schedules = _schedules(api)
    return durable(get_engine(api), name, lambda: work(schedules), what=f"the result of {name}")


async def _run_async(api: str, name: str, work: Callable[[Schedules], T]) -> T:
    schedules = _schedules(api)
    return await durable_async(get_engine(api), name, lambda: work(schedules), what=f"the result of {name}")


def _outside_workflows(api: str) -> Schedules:
    if current_run() is not None:
        raise DBOSException(f"{api} cannot be called from within a workflow")
    return _schedules(api)


def _create(api: str, schedule_name: str, workflow_fn: Callable[..., Any], schedule: str,
            options: Any) -> Callable[[Schedules], None]:
    in_workflow = current_run() is not None

    def work(schedules: Schedules) -> None:
        definition = definition_for(get_engine(api), schedule_name, workflow_fn, schedule, **options)
        schedules.create(definition, again_ok=in_workflow)
    return work


def _definitions(api: str, entries: List[ScheduleInput]) -> List[ScheduleDefinition]:
    engine = get_engine(api)
    if not isinstance(entries, (list, tuple)):
        raise DBOSException(f"{api} takes a list of ScheduleInput dicts, got {entries!r}")
    for entry in entries:
        if not isinstance(entry, dict):
            raise DBOSInvalidArgumentError("schedules", entry, "a ScheduleInput dict")
    return [definition_for(engine, e.get("schedule_name"), e.get("workflow_fn"), e.get("schedule"),
                           context=e.get("context"), automatic_backfill=e.get("automatic_backfill", False),
                           cron_timezone=e.get("cron_timezone"), queue_name=e.get("queue_name"))
            for e in entries]


class ScheduleAPI:
    """Create, list, pause, resume, trigger and backfill schedules (a base of ``DBOS``)."""

    @classmethod
    def create_schedule(cls, *, schedule_name: str, workflow_fn: Callable[..., Any], schedule: str,
                        context: Any = None, automatic_backfill: bool = False,
                        cron_timezone: Optional[str] = None, queue_name: Optional[str] = None) -> None:
        """Run ``workflow_fn(scheduled_time, context)`` at every tick of the cron
        ``schedule`` (5 fields, or 6 with seconds first) in ``cron_timezone``
        (IANA; default UTC), on ``queue_name`` (default: DBOS's internal queue).
        ``DBOSException`` for a bad argument or a name already taken."""
        options = dict(context=context, automatic_backfill=automatic_backfill,
                       cron_timezone=cron_timezone, queue_name=queue_name)
        work = _create("DBOS.create_schedule()", schedule_name, workflow_fn, schedule, options)
        _run("DBOS.create_schedule()", CREATE, work)

    @classmethod
    async def create_schedule_async(cls, *, schedule_name: str, workflow_fn: Callable[..., Any],
                                    schedule: str, context: Any = None, automatic_backfill: bool = False,
                                    cron_timezone: Optional[str] = None,
                                    queue_name: Optional[str] = None) -> None:
        """``create_schedule`` for async code."""
        options = dict(context=context, automatic_backfill=automatic_backfill,
                       cron_timezone=cron_timezone, queue_name=queue_name)
        work = _create("DBOS.create_schedule_async()", schedule_name, workflow_fn, schedule, options)
        await _run_async("DBOS.create_schedule_async()", CREATE, work)

    @classmethod
    def list_schedules(cls, *, status: Filter = None, workflow_name: Filter = None,
                       schedule_name_prefix: Filter = None,
                       application_name: Filter = None) -> List[WorkflowSchedule]:
        """Schedules matching every filter given (each a value or a list), by
        name; by default this application's and unclaimed ones."""
        return _run("DBOS.list_schedules()", LIST, lambda s: s.list(
            status, workflow_name, schedule_name_prefix, application_name))

    @classmethod
    async def list_schedules_async(cls, *, status: Filter = None, workflow_name: Filter = None,
                                   schedule_name_prefix: Filter = None,
                                   application_name: Filter = None) -> List[WorkflowSchedule]:
        """``list_schedules`` for async code."""
        return await _run_async("DBOS.list_schedules_async()", LIST, lambda s: s.list(
            status, workflow_name, schedule_name_prefix, application_name))

    @classmethod
    def get_schedule(cls, name: str) -> Optional[WorkflowSchedule]:
        """The schedule named ``name``; None if there is none."""
        return _run("DBOS.get_schedule()", GET, lambda s: s.get(name))

    @classmethod
    async def get_schedule_async(cls, name: str) -> Optional[WorkflowSchedule]:
        """``get_schedule`` for async code."""
        return await _run_async("DBOS.get_schedule_async()", GET, lambda s: s.get(name))

    @classmethod
    def delete_schedule(cls, name: str) -> None:
        """Delete a schedule (nothing if there is none); its workflows stay."""
        _run("DBOS.delete_schedule()", DELETE, lambda s: s.delete(name))

    @classmethod
    async def delete_schedule_async(cls, name: str) -> None:
        """``delete_schedule`` for async code."""
        await _run_async("DBOS.delete_schedule_async()", DELETE, lambda s: s.delete(name))

    @classmethod
    def pause_schedule(cls, name: str) -> None:
        """Stop firing a schedule's ticks until it is resumed (nothing if there is none)."""
        _run("DBOS.pause_schedule()", PAUSE, lambda s: s.set_status(name, PAUSED))

    @classmethod
    def resume_schedule(cls, name: str) -> None:
        """Fire a paused schedule's ticks again, from the next one."""
        _run("DBOS.resume_schedule()", RESUME, lambda s: s.set_status(name, ACTIVE))

    @classmethod
    def apply_schedules(cls, schedules: List[ScheduleInput]) -> None:
        """Create or redefine schedules by name, all in one transaction (their
        status and last fire stay); not from inside a workflow."""
        _outside_workflows("DBOS.apply_schedules").apply(_definitions("DBOS.apply_schedules()", schedules))

    @classmethod
    async def apply_schedules_async(cls, schedules: List[ScheduleInput]) -> None:
        """``apply_schedules`` for async code."""
        target = _outside_workflows("DBOS.apply_schedules_async")
        definitions = _definitions("DBOS.apply_schedules_async()", schedules)
        await get_engine("DBOS.apply_schedules_async()").in_pool(target.apply, definitions)

    @classmethod
    def trigger_schedule(cls, schedule_name: str) -> WorkflowHandle[None]:
        """Run a schedule's workflow now, once; not from inside a workflow."""
        return WorkflowHandle(_outside_workflows("DBOS.trigger_schedule").trigger(schedule_name))

    @classmethod
    def backfill_schedule(cls, schedule_name: str, start: datetime, end: datetime) -> List[WorkflowHandle[None]]:
        """Run the schedule's workflow for every tick strictly between ``start``
        and ``end`` (naive times are UTC) that did not run yet; handles to all
        those ticks. Not from inside a workflow."""
        ids = _outside_workflows("DBOS.backfill_schedule").backfill(schedule_name, start, end)
        return [WorkflowHandle(workflow_id) for workflow_id in ids]
