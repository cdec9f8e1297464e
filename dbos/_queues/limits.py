"""A queue's limits: what they are, which are legal together, and how workers read them.

A queue's flow control has two scopes. Queue-wide: ``global_concurrency``
(every process together; the deprecated ``concurrency`` is the same column),
``worker_concurrency`` (one process) and ``limiter`` (starts per period).
Per partition key: ``partition_concurrency``, ``partition_worker_concurrency``
and ``partition_limiter``; any of them makes the queue partitioned. The
deprecated ``partition_queue=True`` without partition limits applies the
queue-wide limits to each key instead (``QueueConfig.resolved``).

Every check raises ``DBOSInvalidArgumentError`` (a ``ValueError``) naming
the argument and its value, before anything is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Dict, Optional, Tuple, TypedDict

from ..error import DBOSInvalidArgumentError


class QueueRateLimit(TypedDict):
    """At most ``limit`` workflows start in any rolling window of ``period`` seconds."""

    limit: int
    period: float


@dataclass(frozen=True)
class QueueConfig:
    """A queue's limits as stored (``concurrency`` is the global concurrency)."""

    concurrency: Optional[int] = None
    worker_concurrency: Optional[int] = None
    limiter: Optional[QueueRateLimit] = None
    priority_enabled: bool = False
    partition_queue: bool = False
    polling_interval_sec: float = 1.0
    partition_concurrency: Optional[int] = None
    partition_worker_concurrency: Optional[int] = None
    partition_limiter: Optional[QueueRateLimit] = None

    @property
    def has_partition_limits(self) -> bool:
        return (self.partition_concurrency is not None or self.partition_worker_concurrency is not None
                or self.partition_limiter is not None)

    @property
    def partitioned(self) -> bool:
        """Whether every enqueue needs a partition key."""
        return self.partition_queue or self.has_partition_limits

    @property
    def legacy_partitioned(self) -> bool:
        """The deprecated mode: the queue-wide limits apply to each partition."""
        return self.partition_queue and not self.has_partition_limits

    def resolved(self) -> "Limits":
        """Each limit at the scope a worker enforces it."""
        if self.legacy_partitioned:
            return Limits(None, None, None, self.concurrency, self.worker_concurrency, self.limiter,
                          partitioned=True)
        return Limits(self.concurrency, self.worker_concurrency, self.limiter, self.partition_concurrency,
                      self.partition_worker_concurrency, self.partition_limiter, self.partitioned)


@dataclass(frozen=True)
class Limits:
    """The limits a worker applies: queue-wide, then per partition key."""

    global_concurrency: Optional[int]
    worker_concurrency: Optional[int]
    limiter: Optional[QueueRateLimit]
    partition_concurrency: Optional[int]
    partition_worker_concurrency: Optional[int]
    partition_limiter: Optional[QueueRateLimit]
    partitioned: bool = False


# ----------------------------------------------------------------------
# Single values
# ----------------------------------------------------------------------


def check_count(argument: str, value: Any) -> Optional[int]:
    """A concurrency: None, or an int of at least 1."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise DBOSInvalidArgumentError(argument, value, "expected None or an integer of at least 1")
    return value


def check_limiter(argument: str, value: Any) -> Optional[QueueRateLimit]:
    """A rate limit: None, or ``{"limit": int >= 1, "period": seconds > 0}``."""
    if value is None:
        return None
    expected = "expected None or a dict with a positive integer 'limit' and a positive number 'period'"
    if not isinstance(value, dict):
        raise DBOSInvalidArgumentError(argument, value, expected)
    limit, period = value.get("limit"), value.get("period")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1 or not _positive_number(period):
        raise DBOSInvalidArgumentError(argument, value, expected)
    return QueueRateLimit(limit=limit, period=float(period))  # type: ignore[arg-type]


def check_interval(value: Any) -> float:
    if not _positive_number(value):
        raise DBOSInvalidArgumentError("polling_interval_sec", value, "expected a positive number of seconds")
    return float(value)


def check_flag(argument: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise DBOSInvalidArgumentError(argument, value, "expected True or False")
    return value


CONFLICT_MODES = ("update_if_latest_version", "always_update", "never_update")


def check_on_conflict(value: Any, allowed: Tuple[str, ...] = CONFLICT_MODES) -> str:
    if value not in allowed:
        raise DBOSInvalidArgumentError("on_conflict", value, "expected one of " + ", ".join(map(repr, allowed)))
    return str(value)


def check_name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise DBOSInvalidArgumentError("name", value, "expected a non-empty queue name")
    return value


def _positive_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and value > 0)


# ----------------------------------------------------------------------
# Whole configurations
# ----------------------------------------------------------------------


def check_relations(config: QueueConfig, subject: Optional[str] = None) -> None:
    """The limits nest: a process's share never exceeds the whole, a partition's
    never exceeds the queue's. ``subject``: the setting just changed, named in
    the error when it is one of the pair."""
    pairs = (
        ("worker_concurrency", "concurrency"),
        ("partition_worker_concurrency", "partition_concurrency"),
        ("partition_worker_concurrency", "worker_concurrency"),
        ("partition_worker_concurrency", "concurrency"),
        ("partition_concurrency", "concurrency"),
    )
    for smaller, larger in pairs:
        low, high = getattr(config, smaller), getattr(config, larger)
        if low is None or high is None or low <= high:
            continue
        if subject is not None and subject in (larger, _label(larger)):
            raise DBOSInvalidArgumentError(subject, high, f"expected at least {smaller} ({low})")
        raise DBOSInvalidArgumentError(smaller, low, f"expected at most {_label(larger)} ({high})")


def _label(field: str) -> str:
    return "global_concurrency" if field == "concurrency" else field


def registration(
    *, concurrency: Any = None, global_concurrency: Any = None, worker_concurrency: Any = None,
    limiter: Any = None, partition_concurrency: Any = None, partition_worker_concurrency: Any = None,
    partition_limiter: Any = None, priority_enabled: Any = False, partition_queue: Any = False,
    polling_interval_sec: Any = 1.0,
) -> QueueConfig:
    """The configuration these arguments (of ``Queue`` or ``register_queue``) describe, checked."""
    if concurrency is not None and global_concurrency is not None:
        raise DBOSInvalidArgumentError("concurrency", concurrency,
                                       "concurrency is the deprecated name of global_concurrency; set only one")
    legacy = check_flag("partition_queue", partition_queue)
    config = QueueConfig(
        check_count("global_concurrency" if concurrency is None else "concurrency",
                    global_concurrency if concurrency is None else concurrency),
        check_count("worker_concurrency", worker_concurrency),
        check_limiter("limiter", limiter),
        check_flag("priority_enabled", priority_enabled),
        legacy,
        check_interval(polling_interval_sec),
        check_count("partition_concurrency", partition_concurrency),
        check_count("partition_worker_concurrency", partition_worker_concurrency),
        check_limiter("partition_limiter", partition_limiter),
    )
    if legacy and config.has_partition_limits:
        raise DBOSInvalidArgumentError("partition_queue", True, "partition_queue is deprecated and cannot be "
                                       "combined with the partition_* limits; use only the partition_* limits")
    if legacy and global_concurrency is not None:
        raise DBOSInvalidArgumentError("global_concurrency", global_concurrency, "partition_queue applies every "
                                       "limit per partition; use partition_concurrency instead")
    check_relations(config)
    # Stored, partition_queue says whether the queue is partitioned at all.
    return replace(config, partition_queue=config.partitioned)


# ----------------------------------------------------------------------
# Queue rows
# ----------------------------------------------------------------------


def config_from_row(row: Dict[str, Any]) -> QueueConfig:
    """The configuration a ``queues`` row holds."""
    return QueueConfig(
        row.get("concurrency"), row.get("worker_concurrency"),
        _limiter(row.get("rate_limit_max"), row.get("rate_limit_period_sec")),
        bool(row.get("priority_enabled")), bool(row.get("partition_queue")),
        float(row.get("polling_interval_sec") or 1.0),
        row.get("partition_concurrency"), row.get("partition_worker_concurrency"),
        _limiter(row.get("partition_rate_limit_max"), row.get("partition_rate_limit_period_sec")),
    )


def _limiter(limit: Any, period: Any) -> Optional[QueueRateLimit]:
    if limit is None or period is None:
        return None
    return QueueRateLimit(limit=int(limit), period=float(period))


def row_fields(config: QueueConfig) -> Dict[str, Any]:
    """The ``queues`` columns that store ``config``."""
    limiter, partition_limiter = config.limiter, config.partition_limiter
    return {
        "concurrency": config.concurrency,
        "worker_concurrency": config.worker_concurrency,
        "rate_limit_max": limiter["limit"] if limiter else None,
        "rate_limit_period_sec": limiter["period"] if limiter else None,
        "priority_enabled": config.priority_enabled,
        "partition_queue": config.partition_queue,
        "partition_concurrency": config.partition_concurrency,
        "partition_worker_concurrency": config.partition_worker_concurrency,
        "partition_rate_limit_max": partition_limiter["limit"] if partition_limiter else None,
        "partition_rate_limit_period_sec": partition_limiter["period"] if partition_limiter else None,
        "polling_interval_sec": config.polling_interval_sec,
    }
