"""Workflow statuses and the status record users read."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Dict, List, Optional


class WorkflowStatusString(str, Enum):
    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    MAX_RECOVERY_ATTEMPTS_EXCEEDED = "MAX_RECOVERY_ATTEMPTS_EXCEEDED"
    CANCELLED = "CANCELLED"
    ENQUEUED = "ENQUEUED"
    DELAYED = "DELAYED"


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
