"""How the ``dbos`` command line shows workflows: JSON for programs, in
DBOS Transact's shape, and aligned tables and ``key: value`` blocks for people.

Times are epoch milliseconds in the database; people see them as local ISO
times without an offset, the form ``--start-time``/``--end-time`` accept.
Text for people never carries a control character through: an ID holding
a newline cannot forge a row, an escape sequence cannot reach the terminal.
"""

from __future__ import annotations

import json
import unicodedata
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
# The widest cell of a table: a 36-character UUID and a qualified name fit.
MAX_CELL = 48
# Line breaks, C0/C1 controls, and format characters such as bidi overrides.
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def local_time(epoch_ms: Optional[int]) -> str:
    if epoch_ms is None:
        return "-"
    return datetime.fromtimestamp(epoch_ms / 1000).isoformat(timespec="seconds")


def short(value: Any, width: int = _SHORT) -> str:
    """``repr(value)`` cut to ``width`` characters, on one line."""
    return cell(" ".join(repr(value).split()), width)


def escaped(text: str) -> str:
    """``text`` with each invisible or line-breaking character written as an escape."""
    return "".join(_escape(c) if unicodedata.category(c) in _HIDDEN else c for c in text)


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def cell(text: str, width: int = MAX_CELL) -> str:
    """``text`` escaped and cut to ``width`` characters, for a table or a block.

    The middle goes: a qualified name keeps its function, an ID both ends."""
    text = escaped(text)
    if len(text) <= width:
        return text
    head = (width - 3) // 2
    return text[:head] + "..." + text[len(text) - (width - 3 - head):]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns; each cell escaped and capped at ``MAX_CELL``."""
    rows = [[cell(c) for c in cells] for cells in rows]
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
    return cell(str(value), _LONG)


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


# ----------------------------------------------------------------------
# JSON as DBOS Transact's ``dbos`` prints it
# ----------------------------------------------------------------------

# The order of DBOS Transact's status objects, which scripts may print or diff.
TRANSACT_STATUS_FIELDS = (
    "workflow_id", "status", "name", "recovery_attempts", "config_name", "class_name",
    "authenticated_user", "authenticated_roles", "assumed_role", "queue_name", "executor_id",
    "created_at", "updated_at", "app_version", "app_id", "workflow_deadline_epoch_ms",
    "workflow_timeout_ms", "deduplication_id", "priority", "queue_partition_key", "forked_from",
    "parent_workflow_id", "dequeued_at", "delay_until_epoch_ms", "was_forked_from", "completed_at",
    "attributes", "schedule_name", "application_name", "input", "output", "error",
)


def transact_status(status: WorkflowStatus) -> Dict[str, Any]:
    """Every field of ``status``, in DBOS Transact's order."""
    return {key: getattr(status, key) for key in TRANSACT_STATUS_FIELDS}


def transact_json(value: Any) -> str:
    """One line of JSON as DBOS Transact prints it: what JSON cannot hold (an
    exception, a set, a datetime) becomes its ``str``."""
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        # A dictionary key JSON cannot hold (a tuple), or a cycle: DBOS
        # Transact fails there; print the readable version instead.
        return json.dumps(jsonable(value))


def statuses_transact_json(statuses: Sequence[WorkflowStatus]) -> str:
    return transact_json([transact_status(s) for s in statuses])
