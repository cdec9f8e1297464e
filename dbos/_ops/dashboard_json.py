"""The JSON of the dashboard's API: the filters and fields a page may send,
checked, and the records it gets back.

The page is the only intended client, so the shapes are its own (snake
case, epoch milliseconds as numbers), not DBOS Transact's. Recorded values
(inputs, outputs, events, messages, streams) are sent as display text: the
page shows them, it never computes with them.
"""

from __future__ import annotations

import json
import traceback
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple

from .._serialization import Codec
from .._status import WorkflowStatus, readable
from .admin_json import HTTPError
from .management import StepInfo

PAGE_MAX = 500
SHORT = 100  # characters of a value shown on one line
# A bulk action acts on at most this many of the filtered workflows at once.
BULK_MAX = 10_000

# Page filter -> (list_workflows keyword, kind of value)
_LIST_FILTERS: Dict[str, Tuple[str, str]] = {
    "status": ("status", "texts"),
    "name": ("name", "texts"),
    "queue": ("queue_name", "texts"),
    "executor": ("executor_id", "texts"),
    "app_version": ("app_version", "texts"),
    "id_prefix": ("workflow_id_prefix", "texts"),
    "parent": ("parent_workflow_id", "texts"),
    "created_after": ("start_time", "time"),
    "created_before": ("end_time", "time"),
}


def _texts(value: Any, key: str) -> List[str]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise HTTPError(400, f"'{key}' must be a string or a list of strings, got {json.dumps(value)}")
    return [v for v in values if v]


def epoch_time(value: Any, key: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise HTTPError(400, f"'{key}' must be a time in epoch milliseconds, got {json.dumps(value)}")
    return datetime.fromtimestamp(value / 1000, tz=timezone.utc)


def count_field(body: Dict[str, Any], key: str, default: int, most: int) -> int:
    """An integer field from 1 to ``most`` (``default`` if absent)."""
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise HTTPError(400, f"'{key}' must be an integer from 1 to {most}, got {json.dumps(value)}")
    return value


def text_field(body: Dict[str, Any], key: str, required: bool = True) -> Optional[str]:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise HTTPError(400, f"'{key}' must be a non-empty string, got {json.dumps(value)}")
    return value


def as_object(body: Any, what: str) -> Dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise HTTPError(400, f"The body of {what} must be a JSON object")
    return body


def list_filters(given: Any) -> Dict[str, Any]:
    """``list_workflows`` keywords from the page's filters (unknown ones refused)."""
    given = as_object(given, "a workflow filter")
    unknown = sorted(set(given) - set(_LIST_FILTERS))
    if unknown:
        raise HTTPError(400, f"Unknown filter(s) {', '.join(unknown)}; valid filters are "
                             f"{', '.join(sorted(_LIST_FILTERS))}")
    found: Dict[str, Any] = {"sort_desc": True, "load_input": False, "load_output": False}
    for key, value in given.items():
        keyword, kind = _LIST_FILTERS[key]
        if value is None or value == "" or value == []:
            continue
        found[keyword] = epoch_time(value, key) if kind == "time" else _texts(value, key)
    return found


def cursor(value: Any) -> Optional[Tuple[int, str]]:
    """A page's keyset cursor: the last row's (created_at, workflow_id)."""
    if value is None:
        return None
    if not (isinstance(value, dict) and isinstance(value.get("created_at"), int)
            and isinstance(value.get("workflow_id"), str)):
        raise HTTPError(400, "'after' must be {\"created_at\": <int>, \"workflow_id\": <string>}")
    return int(value["created_at"]), str(value["workflow_id"])


# ----------------------------------------------------------------------
# Answers
# ----------------------------------------------------------------------


def shown(value: Any) -> Optional[str]:
    """A recorded value as the page shows it: JSON where it can be, else its repr."""
    if value is None:
        return None
    try:
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)
    # One line while it fits one; a long value is easier to read laid out.
    return text if len(text) <= SHORT else json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def error_text(error: Any) -> Optional[str]:
    """An error with its traceback, where the recorded exception kept one."""
    if error is None:
        return None
    if isinstance(error, BaseException):
        return "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip()
    return str(error)


_SUMMARY = ("workflow_id", "status", "name", "class_name", "queue_name", "executor_id", "app_version",
            "created_at", "updated_at", "dequeued_at", "completed_at", "parent_workflow_id",
            "forked_from", "recovery_attempts", "authenticated_user", "schedule_name",
            "application_name", "deduplication_id", "priority", "queue_partition_key",
            "workflow_timeout_ms", "workflow_deadline_epoch_ms", "delay_until_epoch_ms")


def workflow_summary(status: WorkflowStatus) -> Dict[str, Any]:
    return {key: getattr(status, key) for key in _SUMMARY}


def workflow_detail(status: WorkflowStatus) -> Dict[str, Any]:
    return {**workflow_summary(status), "input": shown(status.input), "output": shown(status.output),
            "error": error_text(status.error), "attributes": shown(status.attributes)}


def step_record(step: StepInfo) -> Dict[str, Any]:
    return {**step, "output": shown(step["output"]), "error": error_text(step["error"])}


def stored_value(codec: Codec, text: Optional[str], stored: Optional[str]) -> Optional[str]:
    """A stored value (an event's, a message's, a stream's) decoded for display."""
    if text is None:
        return None
    return shown(readable(lambda: codec.for_stored(stored).load_value(text), text))
