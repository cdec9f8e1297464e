"""The scheduler of database-backed schedules: one thread per process.

It reads the ACTIVE schedules of this application (and unclaimed ones) every
polling interval (every second during its first minute, and at once after a
change made in this process), and fires each one's ticks in its time zone:
a workflow ``sched-<name>-<tick>`` enqueued on the schedule's queue (or the
internal one), then ``last_fired_at``. Every process computes the same ID
for a tick and starting a workflow is an upsert, so each tick runs once
however many processes fire it; ``Storage.fire_schedule`` fires only if the
schedule is still ACTIVE and defined as read, so a pause, a deletion or a
new definition applies at once everywhere.

A tick found much later than due means this process did not run meanwhile
(suspended, stopped by a debugger, a long pause): the ticks it missed are
skipped and it goes on with the next one to come, rather than firing them
all at once (DBOS Transact's issue #803), unless the schedule asks for
``automatic_backfill``. With it, when the scheduler (re)starts a schedule,
it first starts the ticks since ``last_fired_at``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Dict, List, Optional

from .._engine.engine import Engine
from .._engine.registry import get_registry
from .._sysdb.records import ScheduleQuery
from .cron import missed, next_tick, now_utc, tick_id, ticks_between
from .queue import INTERNAL_QUEUE, work_arrived
from .schedules import ACTIVE, DEFINITION_KEYS, tick_run

logger = logging.getLogger("dbos")

# The polling interval during the scheduler's first minute (at most).
EARLY_POLL_S = 1.0
EARLY_PERIOD_S = 60.0
# Ticks are spread over up to a tenth of their period, at most this much.
MAX_JITTER_S = 10.0


@dataclass
class _Ticking:
    """A schedule as this scheduler fires it: its row as read, and its next tick."""

    row: Dict[str, Any]
    due: datetime
    fire_at: datetime


def _definition(row: Dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row.get(k) for k in DEFINITION_KEYS)


def _period_s(row: Dict[str, Any], tick: datetime) -> float:
    return (next_tick(row["schedule"], row["cron_timezone"], tick) - tick).total_seconds()


def _fire_time(row: Dict[str, Any], tick: datetime) -> datetime:
    jitter = random.uniform(0, min(_period_s(row, tick) / 10, MAX_JITTER_S))
    return tick + timedelta(seconds=jitter)


class ScheduleRunner(threading.Thread):
    """The thread that fires this process's share of the database's schedules."""

    def __init__(self, engine: Engine, polling_interval_sec: float) -> None:
        super().__init__(name="dbos-schedules", daemon=True)
        self.engine = engine
        self.polling_interval_sec = polling_interval_sec
        self.ticking: Dict[str, _Ticking] = {}
        self._halt = False
        self._wake = threading.Event()
        self._changed = threading.Event()
        self._born = time.monotonic()
        self._unknown: set[str] = set()  # workflows not registered here, already warned about
        self._failing: set[str] = set()  # schedules whose failure was logged, until they work again

    def stop(self) -> None:
        self._halt = True
        self._wake.set()
        if self is not threading.current_thread():
            self.join(timeout=10)

    def changed(self) -> None:
        """A schedule changed here: look now."""
        self._changed.set()
        self._wake.set()

    def _interval(self) -> float:
        if time.monotonic() - self._born < EARLY_PERIOD_S:
            return min(EARLY_POLL_S, self.polling_interval_sec)
        return self.polling_interval_sec

    def run(self) -> None:
        next_poll, failing = 0.0, False
        while not self._halt:
            try:
                if self._changed.is_set() or time.monotonic() >= next_poll:
                    self._changed.clear()
                    self.refresh()
                    next_poll = time.monotonic() + self._interval()
                if failing:
                    logger.info("The schedule runner reads the schedules again")
                failing = False
            except Exception:
                if not failing:  # one line when reading starts failing, one when it works again
                    logger.warning("The schedule runner could not read the schedules; it keeps trying",
                                   exc_info=True)
                failing, next_poll = True, time.monotonic() + EARLY_POLL_S
            self.fire_due()
            self._wake.wait(self._sleep_s(next_poll))
            self._wake.clear()

    def _sleep_s(self, next_poll: float) -> float:
        until_poll = next_poll - time.monotonic()
        now = now_utc()
        until_tick = min(((t.fire_at - now).total_seconds() for t in self.ticking.values()), default=until_poll)
        return max(0.0, min(until_poll, until_tick))

    # ------------------------------------------------------------------
    # Reading the schedules
    # ------------------------------------------------------------------

    def refresh(self) -> None:
        """Follow the schedules as stored: new or redefined ones (re)start, the rest stop."""
        query = ScheduleQuery(status=[ACTIVE], application_names=[self.engine.identity.app_name])
        rows = [r for r in self.engine.sysdb.list_schedules(query) if self._runs_here(r)]
        seen = {row["schedule_name"] for row in rows}
        for name in [n for n in self.ticking if n not in seen]:
            del self.ticking[name]
        for row in rows:
            current = self.ticking.get(row["schedule_name"])
            if current is not None and _definition(current.row) == _definition(row):
                current.row = row
                continue
            try:
                self._start(row)
                self._failing.discard(row["schedule_name"])
            except Exception:  # a row no process could use (written by hand, say): the others go on
                self.ticking.pop(row["schedule_name"], None)
                if row["schedule_name"] not in self._failing:
                    self._failing.add(row["schedule_name"])
                    logger.warning(f"Schedule {row['schedule_name']!r} could not be started", exc_info=True)

    def _runs_here(self, row: Dict[str, Any]) -> bool:
        info = get_registry().functions.get(row["workflow_name"])
        if info is not None and info.kind == "workflow":
            return True
        if row["schedule_name"] not in self._unknown:
            self._unknown.add(row["schedule_name"])
            logger.warning(f"Schedule {row['schedule_name']!r}: workflow {row['workflow_name']!r} is not "
                           "registered in this process, which leaves its ticks to the processes that have it")
        return False

    def _start(self, row: Dict[str, Any]) -> None:
        now = now_utc()
        if row["automatic_backfill"] and row["last_fired_at"]:
            self._backfill(row, datetime.fromisoformat(row["last_fired_at"]), now)
        due = next_tick(row["schedule"], row["cron_timezone"], now)
        self.ticking[row["schedule_name"]] = _Ticking(row, due, _fire_time(row, due))

    def _backfill(self, row: Dict[str, Any], since: datetime, now: datetime) -> None:
        for tick in ticks_between(row["schedule"], row["cron_timezone"], since, now):
            self._fire(row, tick)

    # ------------------------------------------------------------------
    # Firing ticks
    # ------------------------------------------------------------------

    def fire_due(self) -> None:
        """Fire every tick whose time has come; skip those missed long ago."""
        for ticking in list(self.ticking.values()):
            name = ticking.row["schedule_name"]
            try:
                self._fire_due(ticking)
                self._failing.discard(name)
            except Exception:
                # This tick is lost here (other processes may fire it); the next one is tried.
                row = ticking.row
                if name not in self._failing:  # once until it works again
                    self._failing.add(name)
                    logger.warning(f"Schedule {name!r}: the tick of {ticking.due.isoformat()} could not be "
                                   "started here; its next ticks are tried", exc_info=True)
                due = next_tick(row["schedule"], row["cron_timezone"], max(ticking.due, now_utc()))
                ticking.due, ticking.fire_at = due, _fire_time(row, due)

    def _fire_due(self, ticking: _Ticking) -> None:
        while not self._halt and ticking.fire_at <= (now := now_utc()):
            row, tick = ticking.row, ticking.due
            due = next_tick(row["schedule"], row["cron_timezone"], tick)
            jitter = ticking.fire_at - tick  # lateness counts from the planned firing
            if missed(tick, due, now - jitter) and not row["automatic_backfill"]:
                self._skip_missed(ticking, now)
                continue
            if not self._fire(row, tick):
                return
            ticking.due, ticking.fire_at = due, _fire_time(row, due)

    def _skip_missed(self, ticking: _Ticking, now: datetime) -> None:
        row = ticking.row
        due = next_tick(row["schedule"], row["cron_timezone"], now)
        logger.info(f"Schedule {row['schedule_name']!r}: this process did not run from {ticking.due.isoformat()} "
                    f"until {now.isoformat()}; the ticks it missed are skipped (automatic_backfill is off), "
                    f"the next is at {due.isoformat()}")
        ticking.due, ticking.fire_at = due, _fire_time(row, due)

    def _fire(self, row: Dict[str, Any], tick: datetime) -> bool:
        """Start one tick's workflow; False if the schedule changed meanwhile."""
        run = tick_run(self.engine.codec, row, tick, tick_id(row["schedule_name"], tick),
                       self.engine.identity.app_name)
        created = self.engine.sysdb.fire_schedule(row, run, tick.isoformat())
        if created is None:  # paused, deleted or redefined: read it again now
            self.ticking.pop(row["schedule_name"], None)
            self.changed()
            return False
        if created:
            work_arrived(row["queue_name"] or INTERNAL_QUEUE)
        return True


# This process's schedule runner, from launch until DBOS is destroyed.
_runner: Optional[ScheduleRunner] = None


def start_schedule_runner(engine: Engine, polling_interval_sec: float) -> ScheduleRunner:
    """Start firing the database's schedules here; it stops when the engine stops taking work."""
    global _runner
    runner = ScheduleRunner(engine, polling_interval_sec)
    runner.start()
    _runner = runner

    def stop() -> None:
        global _runner
        runner.stop()
        if _runner is runner:
            _runner = None

    engine.pollers.append(stop)
    return runner


def schedules_changed() -> None:
    """A schedule was written here: this process's runner reads them again now."""
    if _runner is not None:
        _runner.changed()


def running_schedules() -> List[str]:
    """The schedules this process's runner fires (for tests and diagnostics)."""
    return sorted(_runner.ticking.copy()) if _runner is not None else []
