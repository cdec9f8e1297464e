"""``@DBOS.scheduled(cron)``: run a workflow at every tick of a cron schedule.

Each tick becomes a workflow with the ID ``sched-<name>-<tick>`` enqueued on
the internal queue. Every process computes the same ID for the same tick, and
starting a workflow is an upsert, so however many processes run the schedule,
each tick runs once. Ticks missed while no process was up are not replayed,
nor are those a process finds long past when it runs again after being
suspended: it goes on with the next tick to come (DBOS Transact's issue #803).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import Any, Callable, List, Tuple, TypeVar

from croniter import croniter

from .._engine.context import SetWorkflowID
from .._engine.engine import Engine, peek_engine
from .._engine.registry import FunctionInfo, get_registry
from .cron import missed
from .queue import INTERNAL, INTERNAL_QUEUE, current_intake, enqueue

logger = logging.getLogger("dbos")

F = TypeVar("F", bound=Callable[..., Any])


def scheduled(cron: str) -> Callable[[F], F]:
    """Apply above ``@DBOS.workflow()``; the workflow takes (scheduled_time, actual_time).

    Above ``@DBOS.step()`` or ``@DBOS.transaction()`` each tick runs the
    function as a one-step workflow, as DBOS Transact does.
    """
    if not croniter.is_valid(cron, second_at_beginning=True):
        raise ValueError(f"Invalid cron schedule {cron!r}: use 5 fields, or 6 with seconds first")

    def register(func: F) -> F:
        info = getattr(func, "__dbos_info__", None)
        if not isinstance(info, FunctionInfo):
            raise TypeError("@DBOS.scheduled() goes above @DBOS.workflow(), @DBOS.step() or @DBOS.transaction()")
        get_registry().schedules.append((info, cron))
        engine = peek_engine()
        if engine is not None and current_intake() is not None and not engine.deactivated:
            # Declared after launch: its ticks start now.
            start_scheduler(engine, [(info, cron)])
        return func

    return register


def start_scheduler(engine: Engine, schedules: List[Tuple[FunctionInfo, str]]) -> "Scheduler":
    scheduler = Scheduler(engine, schedules)
    scheduler.start()
    engine.pollers.append(scheduler.stop)
    return scheduler


class Scheduler(threading.Thread):
    """One thread firing every registered schedule's ticks."""

    def __init__(self, engine: Engine, schedules: List[Tuple[FunctionInfo, str]]) -> None:
        super().__init__(name="dbos-scheduler", daemon=True)
        self.engine = engine
        self.halt = threading.Event()
        now = datetime.now(timezone.utc)
        self._crons = [cron for _, cron in schedules]
        self._next = [(info, croniter(cron, now, second_at_beginning=True)) for info, cron in schedules]
        self._due = [it.get_next(datetime) for _, it in self._next]

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=10)

    def run(self) -> None:
        while self._next and not self.halt.is_set():
            index = min(range(len(self._due)), key=lambda i: self._due[i])
            tick = self._due[index]
            # The timer may wake a hair early by the wall clock: never fire before the tick.
            while (wait := (tick - datetime.now(timezone.utc)).total_seconds()) > 0:
                if self.halt.wait(wait):
                    return
            info, iterator = self._next[index]
            self._due[index] = iterator.get_next(datetime)
            now = datetime.now(timezone.utc)
            if missed(tick, self._due[index], now):
                self._skip_missed(index, now)
                continue
            self._fire(info, tick)

    def _skip_missed(self, index: int, now: datetime) -> None:
        info, _ = self._next[index]
        iterator = croniter(self._crons[index], now, second_at_beginning=True)
        self._next[index] = (info, iterator)
        self._due[index] = iterator.get_next(datetime)
        logger.info(f"Scheduled workflow {info.name}: this process did not run when its ticks fell due; "
                    f"those missed are skipped, the next is at {self._due[index].isoformat()}")

    def _fire(self, info: FunctionInfo, tick: datetime) -> None:
        try:
            with SetWorkflowID(f"sched-{info.name}-{tick.isoformat()}"):
                enqueue(self.engine, INTERNAL, info.wrapper or info.func, (tick, datetime.now(timezone.utc)), {})
        except Exception:
            logger.warning(f"Scheduled workflow {info.name} could not start for {tick} ({INTERNAL_QUEUE})",
                           exc_info=True)
