"""``DBOSClient``'s workflow schedules kept in the database.

The same ``Schedules`` as ``DBOS``'s (``_queues/schedules.py``), by workflow
name: a client does not have the application's code, so the cron string and
the time zone are checked, not the workflow or the queue. A schedule the
client makes belongs to ``application_name`` (the argument, else the
client's), or to no application (unclaimed: the first application that
fires it claims it when it applies it).
"""

from __future__ import annotations

from asyncio import to_thread
from datetime import datetime
from typing import TYPE_CHECKING, Any, List, Optional, Union

from .._engine.handles import WorkflowHandle
from .._queues.schedules import (
    ACTIVE,
    PAUSED,
    ClientScheduleInput,
    ScheduleDefinition,
    Schedules,
    WorkflowSchedule,
    define,
)
from ..error import DBOSInvalidArgumentError
from .client_handles import ClientHandle

if TYPE_CHECKING:
    from .client_handles import ClientStorage

Filter = Optional[Union[str, List[str]]]


def _definition(entry: ClientScheduleInput) -> ScheduleDefinition:
    if not isinstance(entry, dict):
        raise DBOSInvalidArgumentError("schedules", entry, "a ClientScheduleInput dict")
    return define(entry.get("schedule_name"), entry.get("workflow_name"), entry.get("schedule"),
                  workflow_class_name=entry.get("workflow_class_name"), context=entry.get("context"),
                  automatic_backfill=entry.get("automatic_backfill", False),
                  cron_timezone=entry.get("cron_timezone"), queue_name=entry.get("queue_name"),
                  application_name=entry.get("application_name"))


class ScheduleClientAPI:
    """The client's schedule methods (a base of ``DBOSClient``)."""

    _storage: "ClientStorage"
    application_name: Optional[str]

    def _schedules(self) -> Schedules:
        return Schedules(self._storage.ready(), self._storage.codec, self.application_name)

    def create_schedule(self, *, schedule_name: str, workflow_name: str, schedule: str, context: Any = None,
                        workflow_class_name: Optional[str] = None, automatic_backfill: bool = False,
                        cron_timezone: Optional[str] = None, queue_name: Optional[str] = None,
                        application_name: Optional[str] = None) -> None:
        """Schedule the workflow named ``workflow_name`` (see ``DBOS.create_schedule``);
        ``DBOSException`` for a bad cron string or time zone, or a name taken."""
        self._schedules().create(define(
            schedule_name, workflow_name, schedule, workflow_class_name=workflow_class_name, context=context,
            automatic_backfill=automatic_backfill, cron_timezone=cron_timezone, queue_name=queue_name,
            application_name=application_name))

    async def create_schedule_async(self, *, schedule_name: str, workflow_name: str, schedule: str,
                                    context: Any = None, workflow_class_name: Optional[str] = None,
                                    automatic_backfill: bool = False, cron_timezone: Optional[str] = None,
                                    queue_name: Optional[str] = None,
                                    application_name: Optional[str] = None) -> None:
        """``create_schedule`` for async code."""
        await to_thread(lambda: self.create_schedule(
            schedule_name=schedule_name, workflow_name=workflow_name, schedule=schedule, context=context,
            workflow_class_name=workflow_class_name, automatic_backfill=automatic_backfill,
            cron_timezone=cron_timezone, queue_name=queue_name, application_name=application_name))

    def list_schedules(self, *, status: Filter = None, workflow_name: Filter = None,
                       schedule_name_prefix: Filter = None,
                       application_name: Filter = None) -> List[WorkflowSchedule]:
        """Schedules matching every filter given, by name; by default the
        client's application's and unclaimed ones (all, for a client of none)."""
        return self._schedules().list(status, workflow_name, schedule_name_prefix, application_name)

    async def list_schedules_async(self, *, status: Filter = None, workflow_name: Filter = None,
                                   schedule_name_prefix: Filter = None,
                                   application_name: Filter = None) -> List[WorkflowSchedule]:
        """``list_schedules`` for async code."""
        return await to_thread(lambda: self.list_schedules(
            status=status, workflow_name=workflow_name, schedule_name_prefix=schedule_name_prefix,
            application_name=application_name))

    def get_schedule(self, name: str) -> Optional[WorkflowSchedule]:
        """The schedule named ``name``; None if there is none."""
        return self._schedules().get(name)

    async def get_schedule_async(self, name: str) -> Optional[WorkflowSchedule]:
        """``get_schedule`` for async code."""
        return await to_thread(self.get_schedule, name)

    def delete_schedule(self, name: str) -> None:
        """Delete a schedule (nothing if there is none)."""
        self._schedules().delete(name)

    async def delete_schedule_async(self, name: str) -> None:
        """``delete_schedule`` for async code."""
        await to_thread(self.delete_schedule, name)

    def pause_schedule(self, name: str) -> None:
        """Stop firing a schedule's ticks until it is resumed."""
        self._schedules().set_status(name, PAUSED)

    def resume_schedule(self, name: str) -> None:
        """Fire a paused schedule's ticks again."""
        self._schedules().set_status(name, ACTIVE)

    def apply_schedules(self, schedules: List[ClientScheduleInput]) -> None:
        """Create or redefine schedules by name in one transaction (status and last fire stay)."""
        self._schedules().apply([_definition(entry) for entry in schedules])

    async def apply_schedules_async(self, schedules: List[ClientScheduleInput]) -> None:
        """``apply_schedules`` for async code."""
        await to_thread(self.apply_schedules, schedules)

    def trigger_schedule(self, schedule_name: str) -> WorkflowHandle[None]:
        """Run a schedule's workflow now, once."""
        return ClientHandle(self._storage, self._schedules().trigger(schedule_name))

    def backfill_schedule(self, schedule_name: str, start: datetime, end: datetime) -> List[WorkflowHandle[None]]:
        """Run the schedule's workflow for every tick strictly between ``start`` and
        ``end`` (naive: UTC) that did not run yet; handles to all those ticks."""
        ids = self._schedules().backfill(schedule_name, start, end)
        return [ClientHandle(self._storage, workflow_id) for workflow_id in ids]
