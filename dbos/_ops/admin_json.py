"""The JSON of the admin server: the fields a request body may carry, checked,
and the records an answer holds, shaped as DBOS Transact 2.31 shapes them
(PascalCase workflow records and step records whose values are strings).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from .._queues.queue import QueueConfig
from .._status import WorkflowStatus
from ..error import DBOSException
from .filters import build_query
from .management import StepInfo

logger = logging.getLogger("dbos")


class HTTPError(Exception):
    """A request refused with ``status``; ``message`` is what the client reads."""

    def __init__(self, status: int, message: str, headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


# ----------------------------------------------------------------------
# Request bodies
# ----------------------------------------------------------------------

Check = Callable[[Any, str], Any]
Field = Tuple[str, Check]  # (keyword of the management call, value check)


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise HTTPError(400, f"'{key}' must be a string, got {json.dumps(value)}")
    return value


def _name(value: Any, key: str) -> str:
    if not _text(value, key).strip():
        raise HTTPError(400, f"'{key}' must not be empty")
    return str(value)


def _texts(value: Any, key: str) -> Union[str, List[str]]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    if isinstance(value, str):
        return value
    raise HTTPError(400, f"'{key}' must be a string or a list of strings, got {json.dumps(value)}")


# The largest integer a BIGINT column (and a LIMIT) holds.
MAX_INTEGER = 2**63 - 1


def _count(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INTEGER:
        raise HTTPError(400, f"'{key}' must be an integer from 0 to {MAX_INTEGER}, got {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    """A rejected value, shortened: the message must stay readable whatever was sent."""
    text = json.dumps(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _step(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INTEGER:
        raise HTTPError(400, f"'{key}' must be an integer from 1 to {MAX_INTEGER}, got {_shown(value)}")
    return value


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise HTTPError(400, f"'{key}' must be true or false, got {json.dumps(value)}")
    return value


def fields(body: Any, spec: Dict[str, Field], what: str, *, strict: bool) -> Dict[str, Any]:
    """A JSON object's fields, checked and renamed; null means "not given".

    Unknown fields are ignored when not ``strict`` (list filters, as DBOS
    Transact does), and refused when ``strict``: in the body of a change, a
    misspelt field would silently change what is done."""
    if not isinstance(body, dict):
        raise HTTPError(400, f"The body of {what} must be a JSON object")
    unknown = sorted(set(body) - set(spec))
    if unknown and strict:
        raise HTTPError(400, f"{what} got unknown field(s) {', '.join(unknown)}; "
                             f"valid fields are {', '.join(sorted(spec))}")
    if unknown:
        logger.warning(f"The admin server ignored unknown field(s) {', '.join(unknown)} of {what}")
    return {spec[k][0]: spec[k][1](v, k) for k, v in body.items() if v is not None and k in spec}


_COMMON_FILTERS: Dict[str, Field] = {
    "start_time": ("start_time", _text),
    "end_time": ("end_time", _text),
    "status": ("status", _texts),
    "forked_from": ("forked_from", _texts),
    "parent_workflow_id": ("parent_workflow_id", _texts),
    "workflow_name": ("name", _texts),
    "limit": ("limit", _count),
    "offset": ("offset", _count),
    "sort_desc": ("sort_desc", _flag),
    "load_input": ("load_input", _flag),
}
WORKFLOW_FILTERS: Dict[str, Field] = {
    **_COMMON_FILTERS,
    "workflow_uuids": ("workflow_ids", _texts),
    "authenticated_user": ("user", _texts),
    "application_version": ("app_version", _texts),
    "workflow_id_prefix": ("workflow_id_prefix", _texts),
    "load_output": ("load_output", _flag),
}
QUEUE_FILTERS: Dict[str, Field] = {**_COMMON_FILTERS, "queue_name": ("queue_name", _texts)}
FORK_FIELDS: Dict[str, Field] = {
    "start_step": ("start_step", _step),
    "new_workflow_id": ("new_workflow_id", _name),
    "application_version": ("application_version", _text),
}
GC_FIELDS: Dict[str, Field] = {
    "cutoff_epoch_timestamp_ms": ("cutoff_epoch_timestamp_ms", _count),
    "rows_threshold": ("rows_threshold", _count),
}
TIMEOUT_FIELDS: Dict[str, Field] = {"cutoff_epoch_timestamp_ms": ("cutoff_epoch_timestamp_ms", _count)}


def filters(body: Any, spec: Dict[str, Field], what: str, defaults: Dict[str, Any]) -> Dict[str, Any]:
    """The filters of a list request (no body: none), checked before any query runs."""
    found = {**defaults, **fields({} if body is None else body, spec, what, strict=False)}
    try:
        build_query(None, found)  # statuses and times are checked here
    except DBOSException as exc:
        raise HTTPError(400, exc.message) from None
    return found


# ----------------------------------------------------------------------
# Answers
# ----------------------------------------------------------------------


def _str(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def _json_str(value: Any) -> Optional[str]:
    return None if value is None else json.dumps(value, default=str)


# DBOS Transact's workflow record, key by key in its order: most values as
# str() gives them (roles as a Python list, inputs as a Python dict), the
# attributes as JSON, WasForkedFrom a boolean.
_WORKFLOW_KEYS: Tuple[Tuple[str, str, Callable[[Any], Any]], ...] = (
    ("WorkflowUUID", "workflow_id", _str), ("Status", "status", _str),
    ("WorkflowName", "name", _str), ("WorkflowClassName", "class_name", _str),
    ("WorkflowConfigName", "config_name", _str), ("AuthenticatedUser", "authenticated_user", _str),
    ("AssumedRole", "assumed_role", _str), ("AuthenticatedRoles", "authenticated_roles", _str),
    ("Input", "input", _str), ("Output", "output", _str), ("Error", "error", _str),
    ("CreatedAt", "created_at", _str), ("UpdatedAt", "updated_at", _str),
    ("QueueName", "queue_name", _str), ("ApplicationVersion", "app_version", _str),
    ("ExecutorID", "executor_id", _str), ("WorkflowTimeoutMS", "workflow_timeout_ms", _str),
    ("WorkflowDeadlineEpochMS", "workflow_deadline_epoch_ms", _str),
    ("DeduplicationID", "deduplication_id", _str), ("Priority", "priority", _str),
    ("QueuePartitionKey", "queue_partition_key", _str), ("ForkedFrom", "forked_from", _str),
    ("WasForkedFrom", "was_forked_from", bool), ("ParentWorkflowID", "parent_workflow_id", _str),
    ("DequeuedAt", "dequeued_at", _str), ("DelayUntilEpochMS", "delay_until_epoch_ms", _str),
    ("CompletedAt", "completed_at", _str), ("Attributes", "attributes", _json_str),
    ("ScheduleName", "schedule_name", _str), ("ApplicationName", "application_name", _str),
)


def workflow_json(status: WorkflowStatus) -> Dict[str, Any]:
    """DBOS Transact's workflow record of ``status``."""
    return {key: convert(getattr(status, attr)) for key, attr, convert in _WORKFLOW_KEYS}


def step_json(step: StepInfo) -> Dict[str, Any]:
    """DBOS Transact's step record: the ID and name as they are, the rest as strings."""
    out: Dict[str, Any] = dict(step)
    for key in ("output", "error", "started_at_epoch_ms", "completed_at_epoch_ms"):
        out[key] = _str(out[key])
    return out


def queue_json(name: str, config: QueueConfig) -> Dict[str, Any]:
    """DBOS Transact's queue metadata: what is not set is left out."""
    found: Dict[str, Any] = {
        "name": name,
        "concurrency": config.concurrency,
        "workerConcurrency": config.worker_concurrency,
        "rateLimit": dict(config.limiter) if config.limiter else None,
    }
    return {k: v for k, v in found.items() if v is not None}
