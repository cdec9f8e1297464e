"""Changing one limit of a queue kept in the database: checked against the
row as it is now, and written as only the columns that setting owns."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Dict, Tuple

from ..error import DBOSException
from .limits import (
    QueueConfig,
    check_count,
    check_flag,
    check_interval,
    check_limiter,
    check_relations,
    row_fields,
)

# Each setting: how its value is checked, the config field it sets, and the columns written.
SETTINGS: Dict[str, Tuple[Callable[[str, Any], Any], str, Tuple[str, ...]]] = {
    "concurrency": (check_count, "concurrency", ("concurrency",)),
    "global_concurrency": (check_count, "concurrency", ("concurrency",)),
    "worker_concurrency": (check_count, "worker_concurrency", ("worker_concurrency",)),
    "limiter": (check_limiter, "limiter", ("rate_limit_max", "rate_limit_period_sec")),
    "partition_concurrency": (check_count, "partition_concurrency", ("partition_concurrency", "partition_queue")),
    "partition_worker_concurrency": (check_count, "partition_worker_concurrency",
                                     ("partition_worker_concurrency", "partition_queue")),
    "partition_limiter": (check_limiter, "partition_limiter",
                          ("partition_rate_limit_max", "partition_rate_limit_period_sec", "partition_queue")),
    "priority_enabled": (check_flag, "priority_enabled", ("priority_enabled",)),
    "partition_queue": (check_flag, "partition_queue", ("partition_queue",)),
    "polling_interval_sec": (lambda _, v: check_interval(v), "polling_interval_sec", ("polling_interval_sec",)),
}

# Settings that would change meaning under the deprecated partition_queue mode.
_QUEUE_SCOPED = {"global_concurrency", "worker_concurrency", "limiter", "partition_concurrency",
                 "partition_worker_concurrency", "partition_limiter"}
# The column groups a setter may write, for the storage's statements.
COLUMN_GROUPS = tuple(sorted({tuple(sorted(columns)) for _, _, columns in SETTINGS.values()}))


def check_value(setting: str, value: Any) -> Any:
    """The value, checked on its own (before the row is read)."""
    return SETTINGS[setting][0](setting, value)


def changed_columns(queue_name: str, current: QueueConfig, setting: str, value: Any) -> Dict[str, Any]:
    """The columns to write for ``setting = value`` on a queue configured as ``current``."""
    _, field, columns = SETTINGS[setting]
    if setting in _QUEUE_SCOPED and current.legacy_partitioned:
        raise DBOSException(
            f"Cannot set {setting} on queue {queue_name}: it uses the deprecated partition_queue option, "
            "under which concurrency, worker_concurrency and limiter apply per partition; "
            "register it again with the partition_* limits")
    if setting == "partition_queue" and current.has_partition_limits:
        raise DBOSException(f"Cannot set partition_queue on queue {queue_name}: its partition_* limits "
                            "partition it; clear those instead")
    new = replace(current, **{field: value})
    if field.startswith("partition_") and setting != "partition_queue":
        new = replace(new, partition_queue=new.has_partition_limits)
    check_relations(new, subject=setting)
    fields = row_fields(new)
    return {column: fields[column] for column in columns}
