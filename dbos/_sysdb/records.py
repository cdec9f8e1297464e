"""Plain records passed across the storage interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class StepRecord:
    """A step outcome recorded by an earlier execution of a workflow."""

    function_id: int
    function_name: str
    output: Optional[str]
    error: Optional[str]
    child_workflow_id: Optional[str]


@dataclass(frozen=True)
class StepWrite:
    """A step outcome to checkpoint."""

    workflow_id: str
    function_id: int
    function_name: str
    output: Optional[str] = None
    error: Optional[str] = None
    child_workflow_id: Optional[str] = None
    started_at_ms: Optional[int] = None
    completed_at_ms: Optional[int] = None


@dataclass(frozen=True)
class StartResult:
    """What the upsert that starts a workflow found or created."""

    created: bool
    status: str
    name: str
    class_name: Optional[str]
    config_name: Optional[str]
    queue_name: Optional[str]
    deadline_epoch_ms: Optional[int]


@dataclass(frozen=True)
class Outcome:
    status: str
    output: Optional[str]
    error: Optional[str]
