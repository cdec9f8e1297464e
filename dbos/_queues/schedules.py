"""Workflow schedules kept in the database: what ``DBOS`` and ``DBOSClient``
both do with them.

A schedule names a workflow (by name, so a client without the application's
code can make one), a cron string, an optional IANA time zone, a queue, and
a context every tick passes on: the workflow is called as
``workflow(scheduled_time, context)``. ``Schedules`` checks definitions
before anything is written, so bad input leaves the database unchanged, and
starts the workflows a trigger or a backfill asks for. The scheduler that
fires the ticks is ``schedule_runner.py``; ``DBOS`` checks, in addition,
that the workflow is registered here and the queue exists
(``definition_for``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Dict, List, Optional, Sequence, TypedDict, Union

from .._clock import now_ms
from .._engine.engine import Engine
from .._engine.registry import FunctionInfo, get_registry, split_bound
from .._serialization import Codec
from .._sysdb import Storage
from .._sysdb.records import ScheduleQuery
from .._sysdb.schedules import DEFINITION_FIELDS
from ..error import DBOSException, DBOSInvalidArgumentError
from .cron import as_aware, check_cron, check_timezone, now_utc, tick_id, ticks_between
from .queue import INTERNAL_QUEUE

ACTIVE, PAUSED = "ACTIVE", "PAUSED"
# What makes a schedule what it is: a change to any restarts its ticking.
DEFINITION_KEYS = ("schedule_id", *DEFINITION_FIELDS)


class ScheduleInput(TypedDict, total=False):
    """One schedule for ``DBOS.apply_schedules``."""

    schedule_name: str
    workflow_fn: Callable[..., Any]
    schedule: str
    context: Any
    automatic_backfill: bool
    cron_timezone: Optional[str]
    queue_name: Optional[str]


class ClientScheduleInput(TypedDict, total=False):
    """One schedule for ``DBOSClient.apply_schedules``: the workflow by name."""

    schedule_name: str
    workflow_name: str
    workflow_class_name: Optional[str]
    schedule: str
    context: Any
    automatic_backfill: bool
    cron_timezone: Optional[str]
    queue_name: Optional[str]
    application_name: Optional[str]


class WorkflowSchedule(TypedDict):
    """A schedule as stored (``context`` deserialized)."""

    schedule_id: str
    schedule_name: str
    workflow_name: str
    workflow_class_name: Optional[str]
    schedule: str
    status: str
    context: Any
    last_fired_at: Optional[str]
    automatic_backfill: bool
    cron_timezone: Optional[str]
    queue_name: Optional[str]
    application_name: Optional[str]


@dataclass(frozen=True)
class ScheduleDefinition:
    """A schedule's definition, checked: what create and apply write."""

    schedule_name: str
    workflow_name: str
    schedule: str
    workflow_class_name: Optional[str] = None
    context: Any = None
    automatic_backfill: bool = False
    cron_timezone: Optional[str] = None
    queue_name: Optional[str] = None
    application_name: Optional[str] = None


def define(schedule_name: Any, workflow_name: Any, schedule: Any, **optional: Any) -> ScheduleDefinition:
    """A definition from its parts, each checked (``DBOSInvalidArgumentError`` naming the bad one)."""
    _check_text("schedule_name", schedule_name)
    _check_text("workflow_name", workflow_name)
    check_cron(schedule)
    check_timezone(optional.get("cron_timezone"))
    for key in ("workflow_class_name", "queue_name", "application_name"):
        if optional.get(key) is not None:
            _check_text(key, optional[key])
    backfill = optional.get("automatic_backfill", False)
    if not isinstance(backfill, bool):
        raise DBOSInvalidArgumentError("automatic_backfill", backfill, "True or False")
    return ScheduleDefinition(schedule_name, workflow_name, schedule, **optional)


def _check_text(argument: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise DBOSInvalidArgumentError(argument, value, "a non-empty string")


def definition_for(engine: Engine, schedule_name: Any, workflow_fn: Any, schedule: Any,
                   **optional: Any) -> ScheduleDefinition:
    """``define`` for a workflow function of this process: it must be a
    registered workflow, not an instance's method, and its queue must exist
    (declared here or registered in the database)."""
    info = _workflow_info(workflow_fn)
    queue_name = optional.get("queue_name")
    if queue_name is not None and not _queue_exists(engine, queue_name):
        raise DBOSInvalidArgumentError("queue_name", queue_name, "a queue declared with Queue(...) or "
                                       "registered with DBOS.register_queue() before the schedule")
    class_name = info.class_name if info.method_kind == "class" else None
    return define(schedule_name, info.name, schedule, workflow_class_name=class_name,
                  application_name=engine.identity.app_name, **optional)


def _workflow_info(workflow_fn: Any) -> FunctionInfo:
    base, bound = split_bound(workflow_fn)
    info = getattr(base, "__dbos_info__", None)
    name = getattr(workflow_fn, "__qualname__", repr(workflow_fn))
    if not isinstance(info, FunctionInfo) or info.kind != "workflow" \
            or get_registry().functions.get(info.name) is not info:
        raise DBOSInvalidArgumentError("workflow_fn", name, "a function decorated with @DBOS.workflow()")
    if info.method_kind == "instance" or (bound and not isinstance(bound[0], type)):
        raise DBOSInvalidArgumentError("workflow_fn", name, "a function, static method or class method: "
                                       "a schedule cannot call a method of an instance")
    return info


def _queue_exists(engine: Engine, name: str) -> bool:
    return name in get_registry().queues or engine.sysdb.get_queue(name) is not None


def ownership_error(name: str, owner: Optional[str], claimant: Optional[str]) -> DBOSException:
    taken = (f"Schedule {name!r} is already registered by application {owner!r} in this system database: "
             "schedule names are unique across the applications sharing it. ")
    if claimant is None:
        return DBOSException(taken + f"Use another schedule name, or a DBOSClient made with "
                             f"application_name={owner!r} to change {owner!r}'s schedule")
    return DBOSException(taken + f"Give {claimant!r} another schedule name or, if {owner!r} was renamed to "
                         f"{claimant!r}, move its rows first with DBOSClient.rename_application")


def as_list(value: Union[None, str, Sequence[str]], argument: str) -> Optional[List[str]]:
    """A listing filter: None, a string, or a list of strings."""
    if value is None:
        return None
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise DBOSInvalidArgumentError(argument, value, "a string or a list of strings")
    return list(values)


class Schedules:
    """The schedules of one system database, as seen by ``owner`` (an
    application's name; None: a client of none). ``changed`` is called after
    each change, so this process's scheduler looks at once."""

    def __init__(self, storage: Storage, codec: Codec, owner: Optional[str],
                 changed: Callable[[], None] = lambda: None) -> None:
        self.storage = storage
        self.codec = codec
        self.owner = owner
        self.changed = changed

    def _row(self, d: ScheduleDefinition) -> Dict[str, Any]:
        return {
            "schedule_id": str(uuid.uuid4()), "schedule_name": d.schedule_name,
            "workflow_name": d.workflow_name, "workflow_class_name": d.workflow_class_name,
            "schedule": d.schedule, "status": ACTIVE,
            "context": self.codec.dump_value(d.context, what=f"the context of schedule {d.schedule_name!r}"),
            "last_fired_at": None, "automatic_backfill": d.automatic_backfill,
            "cron_timezone": d.cron_timezone, "queue_name": d.queue_name,
            "application_name": d.application_name or self.owner,
        }

    def create(self, definition: ScheduleDefinition, *, again_ok: bool = False) -> None:
        """Write a new schedule (``DBOSException`` if its name is taken).

        ``again_ok``: the same definition there already is fine (a workflow
        that created it and stopped before its checkpoint, running again).
        """
        row = self._row(definition)
        existing = self.storage.create_schedule(row)
        if existing is not None:
            owner = existing["application_name"]
            if owner is not None and owner != row["application_name"]:
                raise ownership_error(definition.schedule_name, owner, row["application_name"])
            if not (again_ok and all(existing[k] == row[k] for k in DEFINITION_KEYS[1:])):
                raise DBOSException(f"Schedule {definition.schedule_name!r} already exists")
        self.changed()

    def apply(self, definitions: Sequence[ScheduleDefinition]) -> None:
        """Create or redefine every schedule, in one transaction; status and last fire stay."""
        rows = [self._row(d) for d in definitions]
        names = [r["schedule_name"] for r in rows]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise DBOSInvalidArgumentError("schedules", twice, "each schedule_name at most once")
        conflict = self.storage.apply_schedules(rows)
        if conflict is not None:
            claimant = next(r["application_name"] for r in rows if r["schedule_name"] == conflict["schedule_name"])
            raise ownership_error(conflict["schedule_name"], conflict["application_name"], claimant)
        self.changed()

    def get(self, name: str) -> Optional[WorkflowSchedule]:
        _check_text("name", name)
        row = self.storage.get_schedule(name)
        return self.as_schedule(row) if row is not None else None

    def list(self, status: Any = None, workflow_name: Any = None, schedule_name_prefix: Any = None,
             application_name: Any = None) -> List[WorkflowSchedule]:
        """Schedules matching every filter given; by default this owner's and unclaimed ones."""
        owners = as_list(application_name, "application_name")
        if owners is None and self.owner is not None:
            owners = [self.owner]
        query = ScheduleQuery(as_list(status, "status"), as_list(workflow_name, "workflow_name"),
                              as_list(schedule_name_prefix, "schedule_name_prefix"), owners)
        return [self.as_schedule(row) for row in self.storage.list_schedules(query)]

    def delete(self, name: str) -> None:
        _check_text("name", name)
        self.storage.delete_schedule(name)
        self.changed()

    def set_status(self, name: str, status: str) -> None:
        _check_text("name", name)
        self.storage.set_schedule_status(name, status)
        self.changed()

    def as_schedule(self, row: Dict[str, Any]) -> WorkflowSchedule:
        try:
            context = self.codec.load_value(row["context"])
        except Exception:  # another application's type: show the stored text
            context = row["context"]
        fields = {k: context if k == "context" else row[k] for k in WorkflowSchedule.__annotations__}
        return WorkflowSchedule(**fields)  # type: ignore[typeddict-item]

    # ------------------------------------------------------------------
    # Starting a schedule's workflows by hand
    # ------------------------------------------------------------------

    def _require(self, name: str) -> Dict[str, Any]:
        _check_text("schedule_name", name)
        row = self.storage.get_schedule(name)
        if row is None:
            raise DBOSException(f"Schedule {name!r} does not exist")
        return row

    def trigger(self, name: str) -> str:
        """Start the schedule's workflow now, whatever its status; its ID."""
        schedule = self._require(name)
        now = now_utc()
        run = tick_run(self.codec, schedule, now, f"sched-{name}-trigger-{now.isoformat()}", self.owner)
        self.storage.start_scheduled_runs([run])
        return str(run["workflow_uuid"])

    def backfill(self, name: str, start: datetime, end: datetime) -> List[str]:
        """Start the workflow of every tick strictly between ``start`` and ``end``
        (naive: UTC) that has none yet; the IDs of all those ticks."""
        schedule = self._require(name)
        for argument, moment in (("start", start), ("end", end)):
            if not isinstance(moment, datetime):
                raise DBOSInvalidArgumentError(argument, moment, "a datetime")
        ticks = list(ticks_between(schedule["schedule"], schedule["cron_timezone"], as_aware(start), end))
        runs = [tick_run(self.codec, schedule, t, tick_id(name, t), self.owner) for t in ticks]
        for first in range(0, len(runs), BACKFILL_BATCH):
            self.storage.start_scheduled_runs(runs[first:first + BACKFILL_BATCH])
        return [str(run["workflow_uuid"]) for run in runs]


# Ticks a backfill starts per transaction: a long one would hold up other writers.
BACKFILL_BATCH = 200


def tick_run(codec: Codec, schedule: Dict[str, Any], scheduled_time: datetime, workflow_id: str,
             owner: Optional[str]) -> Dict[str, Any]:
    """The ENQUEUED row of one run of a schedule's workflow, called with
    ``(scheduled_time, context)`` on the schedule's queue (else the internal
    one), owned by the schedule's application (else ``owner``), for the
    latest application version."""
    name, stamp = schedule["workflow_name"], now_ms()
    context = codec.load_value(schedule["context"])
    writer = codec.home.for_stored(_declared_format(name))
    run = {
        "workflow_uuid": workflow_id, "status": "ENQUEUED", "name": name,
        "class_name": schedule["workflow_class_name"], "config_name": None,
        "queue_name": schedule["queue_name"] or INTERNAL_QUEUE,
        "inputs": writer.dump_inputs((scheduled_time, context), {}, workflow_name=name),
        "application_version": None, "application_name": schedule["application_name"] or owner,
        "created_at": stamp, "updated_at": stamp, "priority": 0, "recovery_attempts": 0,
        "owner_xid": uuid.uuid4().hex, "schedule_name": schedule["schedule_name"],
    }
    if writer.column is not None:
        run["serialization"] = writer.column
    return run


def _declared_format(workflow_name: str) -> Optional[str]:
    """The format a workflow's decorator asks for, when this process has it
    registered (None: the configured one; a client without the code has no say)."""
    info = get_registry().functions.get(workflow_name)
    return info.serialization if info is not None else None
