"""Cron arithmetic for schedules: checking a cron string and a time zone, and
the ticks they give.

A cron string has 5 fields, or 6 with seconds first (croniter's syntax:
ranges, steps, names, ``*``). Ticks are computed in the schedule's IANA time
zone (UTC by default), so a daily tick stays at the same local hour across
daylight-saving changes; each tick is a time-zone-aware ``datetime``.
"""

from __future__ import annotations

from datetime import datetime, timezone, tzinfo
from typing import Iterator, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from ..error import DBOSInvalidArgumentError


def check_cron(cron: object, argument: str = "schedule") -> str:
    """``cron`` if croniter parses it (5 fields, or 6 with seconds first)."""
    valid = isinstance(cron, str) and croniter.is_valid(cron, second_at_beginning=True)
    if not valid:
        raise DBOSInvalidArgumentError(argument, cron, "a cron schedule of 5 fields, or 6 with seconds first")
    return str(cron)


def check_timezone(name: object, argument: str = "cron_timezone") -> Optional[str]:
    """``name`` if it names an IANA time zone (None: UTC)."""
    if name is None:
        return None
    try:
        if not isinstance(name, str) or not name:
            raise ValueError(name)
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DBOSInvalidArgumentError(argument, name, "an IANA time zone name such as 'Europe/Paris'") from None
    return name


def zone(name: Optional[str]) -> tzinfo:
    return ZoneInfo(name) if name else timezone.utc


def as_aware(moment: datetime) -> datetime:
    """A naive time is taken as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def next_tick(cron: str, tz_name: Optional[str], after: datetime) -> datetime:
    """The first tick strictly after ``after``, in the schedule's time zone."""
    start = as_aware(after).astimezone(zone(tz_name))
    tick: datetime = croniter(cron, start, second_at_beginning=True).get_next(datetime)
    return tick


def ticks_between(cron: str, tz_name: Optional[str], start: datetime, end: datetime) -> Iterator[datetime]:
    """Every tick strictly after ``start`` and strictly before ``end``."""
    end = as_aware(end)
    iterator = croniter(cron, as_aware(start).astimezone(zone(tz_name)), second_at_beginning=True)
    while (tick := iterator.get_next(datetime)) < end:
        yield tick


# How late a tick may fire: half its period, within these bounds. Later, the
# process did not run when it fell due (suspended, stopped, a long pause).
MIN_GRACE_S, MAX_GRACE_S = 2.0, 60.0


def missed(tick: datetime, following: datetime, now: datetime) -> bool:
    """Whether a tick found due at ``now`` is too late to fire: its process
    did not run at the time, and firing every such tick on waking would
    replay them in a burst (DBOS Transact's issue #803)."""
    grace_s = min(max((following - tick).total_seconds() / 2, MIN_GRACE_S), MAX_GRACE_S)
    return (now - tick).total_seconds() > grace_s


def tick_id(schedule_name: str, tick: datetime) -> str:
    """The workflow ID of a schedule's tick: the same in every process."""
    return f"sched-{schedule_name}-{tick.isoformat()}"


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
