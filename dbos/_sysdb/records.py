"""Plain records passed across the storage interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, TypedDict

# A message to send: (destination, topic, message text, message UUID, stored
# format or None); an idempotency key makes the UUID, so a resend is skipped.
Message = Tuple[str, Optional[str], str, str, Optional[str]]


@dataclass(frozen=True)
class StepRecord:
    """A step outcome recorded by an earlier execution of a workflow."""

    function_id: int
    function_name: str
    output: Optional[str]
    error: Optional[str]
    child_workflow_id: Optional[str]
    serialization: Optional[str] = None  # the output's stored format; None: the configured one


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
    serialization: Optional[str] = None  # the output's stored format (a message received as it was sent)


@dataclass(frozen=True)
class Received:
    """A message a workflow received and has not yet consumed in the database:
    its consumption and the receive's checkpoint (``step``, whose output is
    the message) are written together, with the workflow's next write."""

    message_uuid: str
    step: StepWrite


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
    serialization: Optional[str] = None  # the row's stored format; None: the configured one


@dataclass(frozen=True)
class ClaimLimits:
    """How much of a queue one claim may take."""

    max_tasks: int
    global_concurrency: Optional[int] = None
    rate_limit_max: Optional[int] = None
    rate_limit_period_sec: Optional[float] = None
    partition_key: Optional[str] = None
    # Per partition key (with ``partition_key``): every process's running ones, and starts.
    partition_concurrency: Optional[int] = None
    partition_rate_limit_max: Optional[int] = None
    partition_rate_limit_period_sec: Optional[float] = None

    @property
    def shared(self) -> bool:
        """Whether the claim spends a budget other processes share (counted under a lock)."""
        return any(limit is not None for limit in (
            self.global_concurrency, self.rate_limit_max, self.partition_concurrency,
            self.partition_rate_limit_max))


@dataclass
class ListQuery:
    """Normalised filters of ``list_workflows``: lists for IN, epoch ms for times."""

    workflow_ids: Optional[List[str]] = None
    status: Optional[List[str]] = None
    name: Optional[List[str]] = None
    app_version: Optional[List[str]] = None
    forked_from: Optional[List[str]] = None
    parent_workflow_id: Optional[List[str]] = None
    user: Optional[List[str]] = None
    queue_name: Optional[List[str]] = None
    executor_id: Optional[List[str]] = None
    schedule_name: Optional[List[str]] = None
    workflow_id_prefix: Optional[List[str]] = None
    # time filter (start_time, completed_before, ...) -> epoch ms
    times: Dict[str, int] = field(default_factory=dict)
    queues_only: bool = False
    was_forked_from: Optional[bool] = None
    has_parent: Optional[bool] = None
    attributes: Optional[str] = None  # JSON text, matched by containment
    # Rows of these apps and unclaimed rows; None means every row.
    application_names: Optional[List[str]] = None
    limit: Optional[int] = None
    offset: Optional[int] = None
    sort_desc: bool = False
    # Keyset paging: only rows after this (created_at, workflow_uuid) in the listing's order.
    after: Optional[Tuple[int, str]] = None
    load_input: bool = True
    load_output: bool = True


@dataclass(frozen=True)
class ForkRequest:
    """A fork of ``original_id`` as ``new_id``, keeping the steps before ``start_step``."""

    original_id: str
    new_id: str
    start_step: int
    queue_name: str
    application_version: Optional[str] = None
    queue_partition_key: Optional[str] = None
    replacement_children: Dict[str, str] = field(default_factory=dict)
    timeout_ms: Optional[int] = None
    executor_id: Optional[str] = None


class ApplicationRowCounts(TypedDict):
    """How many rows of each kind a rename of an application moved to its new name."""

    queues: int
    schedules: int
    versions: int
    workflows: int
    steps: int


@dataclass(frozen=True)
class BounceRequest:
    """A debounce's try to push back the DELAYED, debounced workflow holding its key.

    ``delay_until_ms`` is capped by the row's debounce deadline; the row gets
    ``inputs`` and ``app_version`` (the last call's arguments run, on the
    version that made them). ``application_name`` None: any owner's row.
    """

    workflow_name: str
    queue_name: str
    deduplication_id: str
    delay_until_ms: int
    inputs: str
    app_version: Optional[str]
    application_name: Optional[str]
    serialization: Optional[str] = None  # the stored format of ``inputs``, which the row takes with them


@dataclass(frozen=True)
class Bounce:
    """What a bounce did: pushed back ``bounced_id``, or found the key's holder (or none)."""

    bounced_id: Optional[str] = None
    holder_id: Optional[str] = None
    holder_debounced: bool = False
    holder_name: Optional[str] = None
    holder_application: Optional[str] = None


@dataclass(frozen=True)
class ScheduleQuery:
    """The filters of a schedule listing; None: not filtered on."""

    status: Optional[List[str]] = None
    workflow_name: Optional[List[str]] = None
    name_prefixes: Optional[List[str]] = None
    # Rows of these applications and unclaimed rows.
    application_names: Optional[List[str]] = None
