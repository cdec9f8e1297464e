"""Workflow schedules: ``workflow_schedules``, one row per schedule kept in the database.

A schedule's name is unique across every application sharing the database.
Its ticks are workflows with deterministic IDs, started with the same upsert
as any workflow (``workflows.py``), so however many processes fire a tick,
one row exists. A scheduler fires a tick only if the schedule it read is
still there, ACTIVE and unchanged, in the transaction that starts the tick:
a pause, a deletion or a new definition stops the old ticks at once in every
process, not at its next poll.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from .connection import Connection
from .listing import OWNED, like_prefix
from .records import ScheduleQuery
from .statements import Statement, shaped
from .workflows import start_statement

# Every column but the key: what a definition and its state are made of.
SCHEDULE_FIELDS = (
    "schedule_name", "workflow_name", "workflow_class_name", "schedule", "status", "context",
    "last_fired_at", "automatic_backfill", "cron_timezone", "queue_name", "application_name",
)
# What ``apply_schedules`` replaces; status, key and last fire stay.
DEFINITION_FIELDS = (
    "workflow_name", "workflow_class_name", "schedule", "context", "automatic_backfill",
    "cron_timezone", "queue_name", "application_name",
)
_INSERT = f"""
    INSERT INTO {{workflow_schedules}} (schedule_id, {", ".join(SCHEDULE_FIELDS)})
    VALUES (:schedule_id, {", ".join(":" + f for f in SCHEDULE_FIELDS)})
    ON CONFLICT (schedule_name) DO
"""
INSERT_SCHEDULE = Statement(_INSERT + " NOTHING")
UPSERT_SCHEDULE = Statement(_INSERT + " UPDATE SET "
                            + ", ".join(f"{f} = EXCLUDED.{f}" for f in DEFINITION_FIELDS))
GET_SCHEDULE = Statement("SELECT * FROM {workflow_schedules} WHERE schedule_name = :name")
DELETE_SCHEDULE = Statement("DELETE FROM {workflow_schedules} WHERE schedule_name = :name")
SET_STATUS = Statement("UPDATE {workflow_schedules} SET status = :status WHERE schedule_name = :name")
SET_LAST_FIRED = Statement("""
    UPDATE {workflow_schedules} SET last_fired_at = :fired_at WHERE schedule_id = :schedule_id
""")

_PREFIX = ("EXISTS (SELECT 1 FROM (VALUES :prefixes) AS prefixes "
           "WHERE schedule_name LIKE prefixes.column1 ESCAPE '!')")


def schedule_record(row: Dict[str, Any]) -> Dict[str, Any]:
    """A row as read, with its flag a bool on both backends."""
    return {**row, "automatic_backfill": bool(row["automatic_backfill"])}


def _same_definition(read: Dict[str, Any], now: Dict[str, Any]) -> bool:
    return all(read.get(f) == now.get(f) for f in ("schedule_id", *DEFINITION_FIELDS))


class ScheduleRows(Connection):
    def create_schedule(self, row: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """Insert a schedule; the schedule already holding its name, if one does (nothing written)."""
        for attempt in self.attempts():
            with attempt:
                inserted = self.rowcount(INSERT_SCHEDULE, **row)
                existing = None if inserted else self._schedule(row["schedule_name"])
        return existing

    def apply_schedules(self, rows: Sequence[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        """Insert or redefine schedules by name, all or none; a schedule of
        another application in the way, if any (then nothing is written)."""
        for attempt in self.attempts():
            with attempt:
                conflict = self._apply(rows)
        return conflict

    def _apply(self, rows: Sequence[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        for row in rows:
            existing = self._schedule(row["schedule_name"])
            owner = existing["application_name"] if existing else None
            if owner is not None and owner != row["application_name"]:
                return existing
        for row in rows:
            self.rowcount(UPSERT_SCHEDULE, **row)
        return None

    def get_schedule(self, name: str) -> Optional[Dict[str, Any]]:
        """The schedule named ``name``, whoever owns it."""
        return self._schedule(name)

    def _schedule(self, name: str) -> Optional[Dict[str, Any]]:
        rows = self.records(GET_SCHEDULE, name=name)
        return schedule_record(rows[0]) if rows else None

    def list_schedules(self, query: ScheduleQuery) -> List[Dict[str, Any]]:
        """Schedules matching every filter ``query`` sets, by name."""
        clauses: List[str] = []
        params: Dict[str, Any] = {}
        for column, values in (("status", query.status), ("workflow_name", query.workflow_name)):
            if values is not None:
                clauses.append(f"{column} IN (:{column})" if values else "1 = 0")
                params[column] = values
        if query.name_prefixes is not None:
            clauses.append(_PREFIX if query.name_prefixes else "1 = 0")
            params["prefixes"] = [(like_prefix(p),) for p in query.name_prefixes]
        if query.application_names is not None:
            clauses.append(OWNED)
            params["application_names"] = query.application_names
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        text = f"SELECT * FROM {{workflow_schedules}}{where} ORDER BY schedule_name"
        return [schedule_record(r) for r in self.records(shaped(text), **params)]

    def delete_schedule(self, name: str) -> None:
        """Forget a schedule (the workflows it started stay)."""
        self.rowcount(DELETE_SCHEDULE, name=name)

    def set_schedule_status(self, name: str, status: str) -> None:
        """Pause (PAUSED) or resume (ACTIVE) a schedule; nothing if there is none."""
        self.rowcount(SET_STATUS, name=name, status=status)

    def fire_schedule(self, schedule: Dict[str, Any], run: Dict[str, Any], fired_at: str) -> Optional[bool]:
        """Start one tick's workflow ``run`` and record ``fired_at``, if ``schedule``
        (as read) is still ACTIVE and defined alike. None: it is not (nothing
        written); else whether this call created the workflow."""
        for attempt in self.attempts():
            with attempt:
                created = self._fire(schedule, run, fired_at)
        return created

    def _fire(self, schedule: Dict[str, Any], run: Dict[str, Any], fired_at: str) -> Optional[bool]:
        now = self._schedule(schedule["schedule_name"])
        if now is None or now["status"] != "ACTIVE" or not _same_definition(schedule, now):
            return None
        found = self.one(start_statement(tuple(run)), **run)
        self.rowcount(SET_LAST_FIRED, fired_at=fired_at, schedule_id=schedule["schedule_id"])
        return found is not None and found[4] == run.get("owner_xid")

    def start_scheduled_runs(self, runs: Sequence[Dict[str, Any]]) -> List[str]:
        """Start workflows a schedule asked for (a trigger, a backfill) in one
        transaction; the IDs of those not there before."""
        for attempt in self.attempts():
            with attempt:
                created = [run["workflow_uuid"] for run in runs
                           if (found := self.one(start_statement(tuple(run)), **run)) is not None
                           and found[4] == run.get("owner_xid")]
        return created
