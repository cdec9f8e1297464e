"""How the ``dbos`` command line shows workflows: aligned tables and
``key: value`` blocks for people, JSON for programs.

Times are epoch milliseconds in the database; people see them as local ISO
times without an offset, the form ``--start-time``/``--end-time`` accept.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Dict, List, Optional, Sequence

from .._status import WorkflowStatus
from .management import StepInfo

# Recorded values: never loaded by listings, so left out of their JSON.
VALUE_FIELDS = ("input", "output", "error")
_TIME_FIELDS = frozenset({
    "created_at", "updated_at", "dequeued_at", "completed_at",
    "workflow_deadline_epoch_ms", "delay_until_epoch_ms",
})
_SHORT = 60
_LONG = 500


def local_time(epoch_ms: Optional[int]) -> str:
    if epoch_ms is None:
        return "-"
    return datetime.fromtimestamp(epoch_ms / 1000).isoformat(timespec="seconds")


def short(value: Any, width: int = _SHORT) -> str:
    """``repr(value)`` cut to ``width`` characters, on one line."""
    text = " ".join(repr(value).split())
    return text if len(text) <= width else text[: width - 3] + "..."


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(cells[i]) for cells in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()
             for cells in [headers, *rows]]
    return "\n".join(lines)


# ----------------------------------------------------------------------
# Workflows
# ----------------------------------------------------------------------


def status_table(statuses: Sequence[WorkflowStatus]) -> str:
    if not statuses:
        return "No workflows found."
    headers = ["ID", "STATUS", "NAME", "QUEUE", "CREATED", "UPDATED"]
    rows = [
        [s.workflow_id, s.status, s.name, s.queue_name or "-",
         local_time(s.created_at), local_time(s.updated_at)]
        for s in statuses
    ]
    return table(headers, rows)


def status_dict(status: WorkflowStatus, with_values: bool) -> Dict[str, Any]:
    """Every field of the status, in declaration order."""
    fields = {key: getattr(status, key) for key in WorkflowStatus.__annotations__}
    if not with_values:
        for key in VALUE_FIELDS:
            fields.pop(key)
    return fields


def status_block(status: WorkflowStatus) -> str:
    """``key: value`` lines of the fields that have a value."""
    fields = {k: v for k, v in status_dict(status, True).items() if v is not None}
    width = max(len(key) for key in fields)
    return "\n".join(f"{key + ':':<{width + 1}} {_readable(key, value)}"
                     for key, value in fields.items())


def _readable(key: str, value: Any) -> str:
    if key in _TIME_FIELDS:
        return local_time(value)
    if key in VALUE_FIELDS:
        return short(value, _LONG)
    return str(value)


# ----------------------------------------------------------------------
# Steps
# ----------------------------------------------------------------------


def steps_table(steps: Sequence[StepInfo]) -> str:
    if not steps:
        return "No steps recorded."
    headers = ["ID", "NAME", "OUTPUT", "CHILD", "STARTED", "COMPLETED"]
    rows = [
        [str(s["function_id"]), s["function_name"], _outcome(s), s["child_workflow_id"] or "-",
         local_time(s["started_at_epoch_ms"]), local_time(s["completed_at_epoch_ms"])]
        for s in steps
    ]
    return table(headers, rows)


def _outcome(step: StepInfo) -> str:
    if step["error"] is not None:
        return "error: " + short(step["error"])
    return short(step["output"])


# ----------------------------------------------------------------------
# JSON
# ----------------------------------------------------------------------


def to_json(value: Any) -> str:
    return json.dumps(jsonable(value), indent=2)


def jsonable(value: Any) -> Any:
    """``value`` with what JSON cannot hold turned into text (exceptions as
    ``Type: message``, other objects by ``str``), and dictionary keys as text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {_key(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(item) for item in value]
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    return str(value)


def _key(key: Any) -> str:
    return key if isinstance(key, str) else str(key)


def statuses_json(statuses: Sequence[WorkflowStatus], with_values: bool) -> str:
    items: List[Dict[str, Any]] = [status_dict(s, with_values) for s in statuses]
    return to_json(items)
