"""Workflow statuses and the status record users read, built from a row."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Dict, List, Optional

from ._serialization import Codec

logger = logging.getLogger("dbos")


class WorkflowStatusString(str, Enum):
    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    MAX_RECOVERY_ATTEMPTS_EXCEEDED = "MAX_RECOVERY_ATTEMPTS_EXCEEDED"
    CANCELLED = "CANCELLED"
    ENQUEUED = "ENQUEUED"
    DELAYED = "DELAYED"


# A workflow in one of these has no outcome yet.
ACTIVE_STATUSES = frozenset({"PENDING", "ENQUEUED", "DELAYED"})


@dataclass
class StepStatus:
    """What ``DBOS.step_status`` shows inside a step."""

    step_id: int
    current_attempt: Optional[int] = None
    max_attempts: Optional[int] = None


class WorkflowStatus:
    """One workflow's recorded state, as ``DBOS.get_workflow_status`` returns it."""

    workflow_id: str
    status: str
    name: str
    class_name: Optional[str] = None
    config_name: Optional[str] = None
    authenticated_user: Optional[str] = None
    assumed_role: Optional[str] = None
    authenticated_roles: Optional[List[str]] = None
    input: Optional[Dict[str, Any]] = None
    output: Optional[Any] = None
    error: Optional[Exception] = None
    created_at: Optional[int] = None
    updated_at: Optional[int] = None
    queue_name: Optional[str] = None
    executor_id: Optional[str] = None
    app_version: Optional[str] = None
    app_id: Optional[str] = None
    recovery_attempts: Optional[int] = None
    workflow_timeout_ms: Optional[int] = None
    workflow_deadline_epoch_ms: Optional[int] = None
    deduplication_id: Optional[str] = None
    priority: Optional[int] = None
    queue_partition_key: Optional[str] = None
    forked_from: Optional[str] = None
    was_forked_from: bool = False
    parent_workflow_id: Optional[str] = None
    dequeued_at: Optional[int] = None
    delay_until_epoch_ms: Optional[int] = None
    completed_at: Optional[int] = None
    attributes: Optional[Dict[str, Any]] = None
    schedule_name: Optional[str] = None
    application_name: Optional[str] = None

    def __init__(self, **fields: Any) -> None:
        for key, value in fields.items():
            if not hasattr(type(self), key) and key not in type(self).__annotations__:
                raise TypeError(f"WorkflowStatus has no field {key!r}")
            setattr(self, key, value)

    def __repr__(self) -> str:
        return f"WorkflowStatus(workflow_id={self.workflow_id!r}, status={self.status!r}, name={self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WorkflowStatus) and vars(self) == vars(other)


# Row columns that WorkflowStatus names differently, and those it does not show.
_RENAMED = {
    "workflow_uuid": "workflow_id",
    "application_version": "app_version",
    "application_id": "app_id",
    "started_at_epoch_ms": "dequeued_at",
}
_NOT_SHOWN = {"request", "inputs", "output", "error", "owner_xid", "serialization",
              "rate_limited", "debounce_deadline_epoch_ms", "is_debounced"}


def status_from_row(codec: Codec, row: Dict[str, Any]) -> WorkflowStatus:
    """A status object; data that cannot be read back is shown raw, with a warning."""
    stored = row.get("serialization")
    fields = {_RENAMED.get(k, k): v for k, v in row.items() if k not in _NOT_SHOWN}
    fields["authenticated_roles"] = _json(row.get("authenticated_roles"))
    fields["attributes"] = _json(row.get("attributes"))
    fields["was_forked_from"] = bool(row.get("was_forked_from"))
    # An unknown stored format (for_stored raises) leaves the values raw too.
    fields["input"] = readable(lambda: _inputs(codec.for_stored(stored), row.get("inputs")), row.get("inputs"))
    fields["output"] = readable(lambda: codec.for_stored(stored).load_value(row.get("output")), row.get("output"))
    error = row.get("error")
    fields["error"] = readable(lambda: codec.for_stored(stored).load_error(error), error) if error else None
    return WorkflowStatus(**fields)


def _inputs(codec: Codec, text: Optional[str]) -> Optional[Dict[str, Any]]:
    if text is None:
        return None
    args, kwargs = codec.load_inputs(text)
    return {"args": args, "kwargs": kwargs}


def readable(load: Callable[[], Any], raw: Any) -> Any:
    """``load()``, or the raw recorded text (with a warning) when it cannot be read."""
    try:
        return load()
    except Exception as exc:
        logger.warning(f"Could not deserialize a recorded value ({exc}); showing it raw")
        return raw


def _json(text: Optional[str]) -> Any:
    return json.loads(text) if text else None
