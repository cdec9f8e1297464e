"""``Storage``: every operation the engine may ask of the system database.

This is the whole contract between the layers above and the tables: the
engine, the queues and the operations tools hold a ``Storage`` and call
nothing else of it. ``SystemDatabase`` implements it over SQL, as SQLite and
PostgreSQL both run it; ``PostgresSystemDatabase`` replaces what PostgreSQL
does in fewer round trips. Each implementation lives with its named
statements, one module per table group (named below each section).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, ContextManager, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple

from .._versions import VersionInfo
from .records import (
    ApplicationRowCounts,
    Bounce,
    BounceRequest,
    ClaimLimits,
    ForkRequest,
    ListQuery,
    Message,
    Outcome,
    Received,
    ScheduleQuery,
    StartResult,
    StepRecord,
    StepWrite,
)


class Listening(Protocol):
    # Whether every committed key arrives while listening (PostgreSQL's
    # LISTEN, which says LISTENING after a reconnect); SQLite's doorbell can
    # drop one, so its waiters keep polling at the configured interval.
    reliable: bool
    # Set once other processes' notifications reach this one.
    ready: threading.Event

    def stop(self) -> None:
        """Stop listening and close the connection."""


class Storage(Protocol):
    # -- steps (steps.py) ---------------------------------------------------

    def record_step(self, step: StepWrite) -> str:
        """Checkpoint a step; the workflow's status as of that write (conflict: DBOSWorkflowConflictIDError)."""
        ...

    def recorded_child(self, workflow_id: str, function_id: int) -> Optional[str]:
        """The child workflow a recorded step started, if the step is recorded."""
        ...

    def load_steps(self, workflow_id: str) -> Dict[int, StepRecord]:
        """Every step an earlier execution of the workflow recorded."""
        ...

    def load_steps_many(self, workflow_ids: Sequence[str]) -> Dict[str, Dict[int, StepRecord]]:
        """``load_steps`` for many workflows in one query."""
        ...

    def list_steps(self, workflow_id: str, limit: Optional[int] = None,
                   offset: Optional[int] = None) -> List[Dict[str, Any]]:
        """A workflow's recorded steps in order, as column dicts."""
        ...

    # -- workflows (workflows.py) -------------------------------------------

    def start_workflow(self, row: Dict[str, Any], link: Optional[StepWrite] = None) -> StartResult:
        """Insert a workflow's row or find the one there; ``link`` checkpoints the start in its parent."""
        ...

    def record_outcome(self, workflow_id: str, status: str, output: Optional[str],
                       error: Optional[str]) -> bool:
        """Record a workflow's outcome if it is still PENDING; False if it was not."""
        ...

    def workflow_outcome(self, workflow_id: str) -> Optional[Outcome]:
        """Status, output and error of a workflow; None if there is none."""
        ...

    def workflow_statuses(self, workflow_ids: Sequence[str]) -> Dict[str, str]:
        """The status of each listed workflow that exists."""
        ...

    def workflow_row(self, workflow_id: str) -> Optional[Dict[str, Any]]:
        """The whole ``workflow_status`` row of a workflow."""
        ...

    def existing_workflows(self, workflow_ids: Sequence[str]) -> List[str]:
        """Those of the IDs that name a workflow."""
        ...

    def cancel_workflows(self, workflow_ids: Sequence[str]) -> List[str]:
        """Cancel the unfinished ones and tell other processes; return those cancelled."""
        ...

    def resume_workflows(self, workflow_ids: Sequence[str], queue_name: str) -> List[str]:
        """Re-enqueue unfinished workflows (every ID must exist); return those re-enqueued."""
        ...

    def delete_workflows(self, workflow_ids: Sequence[str]) -> int:
        """Delete workflows with all they recorded; how many were deleted."""
        ...

    def set_attributes(self, workflow_id: str, attributes: Optional[str]) -> bool:
        """Replace a workflow's attributes (JSON text, None clears); False if there is none."""
        ...

    def pending_workflows(self, executor_id: str, application_version: str) -> List[str]:
        """PENDING workflows of an executor and version, oldest first."""
        ...

    def pending_workflow_queues(self, executor_id: str,
                                application_version: str) -> Dict[str, Optional[str]]:
        """``pending_workflows``, each with its queue (None: started directly)."""
        ...

    def claim_for_recovery(self, workflow_id: str, executor_id: str) -> Optional[Dict[str, Any]]:
        """Count a recovery attempt on a PENDING workflow; what running it needs."""
        ...

    def pending_attempts(self, executor_id: str, application_version: str) -> Dict[str, int]:
        """``pending_workflows``, each with its recovery attempts so far."""
        ...

    def claim_many_for_recovery(self, seen: Mapping[str, int],
                                executor_id: str) -> Dict[str, Dict[str, Any]]:
        """``claim_for_recovery`` for many workflows in one statement, each only
        if its recovery attempts are still those ``seen``: no one claimed it since."""
        ...

    def dead_letter(self, workflow_id: str) -> bool:
        """Move a workflow out of recovery attempts to MAX_RECOVERY_ATTEMPTS_EXCEEDED."""
        ...

    def dead_letter_many(self, workflow_ids: Sequence[str]) -> int:
        """``dead_letter`` for many workflows in one statement; how many it moved."""
        ...

    # -- messages, events, streams (messages.py) ----------------------------

    def send_messages(self, messages: Sequence[Message], step: Optional[StepWrite] = None,
                      received: Optional[Received] = None, announce: bool = True) -> Optional[str]:
        """Insert messages with ``step``'s checkpoint, and consume ``received``
        (``consume_received``), atomically; the sender's status. ``announce``
        False: other processes are not told (every destination waits here)."""
        ...

    def find_message(self, destination_id: str, topic: Optional[str]) -> Optional[Tuple[str, str, Optional[str]]]:
        """The oldest unread message, only read: (message UUID, message, format) or None."""
        ...

    def consume_received(self, received: Received) -> str:
        """Mark a found message consumed with its receive's checkpoint, atomically; the status.
        ``DBOSWorkflowConflictIDError`` if another execution took it or recorded the receive."""
        ...

    def set_event(self, workflow_id: str, key: str, value: str, function_id: int,
                  step: Optional[StepWrite] = None, serialization: Optional[str] = None,
                  received: Optional[Received] = None) -> Optional[str]:
        """Set an event's value and history, with ``step``'s checkpoint; the status."""
        ...

    def get_event(self, workflow_id: str, key: str) -> Optional[Tuple[str, Optional[str]]]:
        """``(value, stored format)`` of an event, if set."""
        ...

    def all_events(self, workflow_id: str) -> Dict[str, Tuple[str, Optional[str]]]:
        """Every event of a workflow with its latest value and stored format."""
        ...

    def write_stream(self, workflow_id: str, key: str, value: str, function_id: int,
                     step: Optional[StepWrite] = None, serialization: Optional[str] = None,
                     received: Optional[Received] = None) -> Optional[str]:
        """Append to a stream with ``step``'s checkpoint; the status."""
        ...

    def read_stream(self, workflow_id: str, key: str, offset: int) -> Optional[Tuple[str, Optional[str]]]:
        """``(value, stored format)`` at an offset of a stream, if written yet."""
        ...

    def listen(self, on_key: Callable[[str], None]) -> Optional[Listening]:
        """Wake ``on_key`` with the keys other processes notify; None where they cannot."""
        ...

    # -- queues (queues.py) --------------------------------------------------

    def claim_queued(self, queue_name: str, limits: ClaimLimits, executor_id: str,
                     app_version: str, app_name: str) -> List[Dict[str, Any]]:
        """Move what the limits allow of ``app_name``'s and unclaimed ENQUEUED rows to
        PENDING here, stamped with ``app_name``; the claimed rows."""
        ...

    def queue_partitions(self, queue_name: str) -> List[str]:
        """Partition keys of a queue that have work waiting."""
        ...

    def promote_delayed(self, queue_name: str) -> int:
        """Make DELAYED workflows whose time has come ENQUEUED."""
        ...

    def requeue_pending(self, executor_id: str, app_version: str) -> int:
        """Put the queued workflows an executor was running back on their queues."""
        ...

    def save_queue(self, fields: Dict[str, Any], update: bool, owner: Optional[str] = None) -> bool:
        """Register a queue (``update``: replace the limits of one registered); whether it was new."""
        ...

    def update_queue(self, name: str, fields: Dict[str, Any]) -> bool:
        """Write some limits of a registered queue; False if it is not registered."""
        ...

    def get_queue(self, name: str) -> Optional[Dict[str, Any]]:
        """A registered queue's row."""
        ...

    def list_queues(self, owners: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
        """Registered queues' rows by name: all, or those of ``owners`` and the unclaimed."""
        ...

    def deduplicated_workflow(self, queue_name: str, deduplication_id: str) -> Optional[str]:
        """The workflow holding a deduplication ID on a queue."""
        ...

    def is_latest_version(self, app_version: str) -> bool:
        """Whether ``app_version`` is the latest registered application version."""
        ...

    def delete_queue(self, name: str) -> None:
        """Forget a registered queue."""
        ...

    # -- delayed and debounced workflows (delayed.py) -------------------------

    def bounce_debounced(self, request: BounceRequest, step: Optional[StepWrite] = None,
                         encode: Optional[Callable[[Dict[str, Any]], str]] = None) -> Tuple[Bounce, Optional[str]]:
        """Push back the debounced DELAYED workflow holding a key (or find its holder); ``step`` checkpoints it."""
        ...

    def set_workflow_delay(self, workflow_id: str, delay_until_ms: int) -> Optional[str]:
        """Make a DELAYED workflow due then; its queue, or None if it is not DELAYED."""
        ...

    # -- workflow schedules (schedules.py) -----------------------------------

    def create_schedule(self, row: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """Insert a schedule; the one already holding its name, if any (nothing written)."""
        ...

    def apply_schedules(self, rows: Sequence[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        """Insert or redefine schedules by name, all or none; another application's schedule in the way, if any."""
        ...

    def get_schedule(self, name: str) -> Optional[Dict[str, Any]]:
        """The schedule named ``name``, whoever owns it."""
        ...

    def list_schedules(self, query: ScheduleQuery) -> List[Dict[str, Any]]:
        """Schedules matching a listing's filters, by name."""
        ...

    def delete_schedule(self, name: str) -> None:
        """Forget a schedule."""
        ...

    def set_schedule_status(self, name: str, status: str) -> None:
        """Pause (PAUSED) or resume (ACTIVE) a schedule."""
        ...

    def fire_schedule(self, schedule: Dict[str, Any], run: Dict[str, Any], fired_at: str) -> Optional[bool]:
        """Start a tick's workflow if the schedule is still ACTIVE and alike (None if not); whether it was new."""
        ...

    def start_scheduled_runs(self, runs: Sequence[Dict[str, Any]]) -> List[str]:
        """Start a trigger's or a backfill's workflows in one transaction; the IDs that were new."""
        ...

    # -- listing and forks (listing.py, forks.py) ----------------------------

    def list_workflows(self, query: ListQuery) -> List[Dict[str, Any]]:
        """``workflow_status`` rows matching a listing's filters."""
        ...

    def descendants(self, workflow_ids: Sequence[str]) -> List[str]:
        """The workflows and every workflow started under them, at any depth."""
        ...

    def collectable_workflows(self, cutoff_ms: int, application_names: Optional[List[str]],
                              batch_size: int) -> List[str]:
        """Finished workflows created before the cutoff, oldest first, a batch at most."""
        ...

    def nth_newest_created_at(self, n: int, application_names: Optional[List[str]]) -> Optional[int]:
        """``created_at`` of the n-th newest workflow, if there are n."""
        ...

    def active_created_before(self, cutoff_ms: int, application_names: Optional[List[str]]) -> List[str]:
        """Active workflows created at or before the cutoff."""
        ...

    def fork_workflow(self, request: ForkRequest) -> str:
        """Create a fork, ENQUEUED, with the original's history before its start step."""
        ...

    # -- application versions (versions.py) ----------------------------------

    def register_application_version(self, version_name: str, application_name: str) -> None:
        """Record a version this application launched with."""
        ...

    def list_application_versions(self) -> List[VersionInfo]:
        """Registered application versions, newest first."""
        ...

    def set_latest_application_version(self, version_name: str) -> None:
        """Make a version the latest."""
        ...

    # -- executors' heartbeats and takeover (executors.py) --------------------

    def record_heartbeat(self, executor_id: str, app_version: str, application_name: str,
                         hostname: str, pid: int) -> bool:
        """Mark this executor alive now; False if its row was missing (first beat, or taken over)."""
        ...

    def executor_holder(self, executor_id: str, app_version: str,
                        timeout_ms: int) -> Optional[Tuple[Optional[str], Optional[int]]]:
        """(hostname, pid) of the process holding this executor ID, if its heartbeat is fresh."""
        ...

    def claim_executor_id(self, executor_id: str, app_version: str, application_name: str,
                          hostname: str, pid: int, timeout_ms: int,
                          seen: Optional[Tuple[Optional[str], Optional[int]]]) -> bool:
        """Hold this executor ID, unless a process other than ``seen`` holds it with a fresh heartbeat."""
        ...

    def stale_executors(self, executor_id: str, app_version: str, application_name: str,
                        timeout_ms: int) -> List[str]:
        """Other executors of this application and version silent for over ``timeout_ms``."""
        ...

    def take_over_executor(self, dead_executor_id: str, app_version: str, timeout_ms: int,
                           executor_id: str) -> Optional[Dict[str, int]]:
        """Claim a silent executor's work atomically: requeue its queued workflows, return the rest, now ours (ID -> recovery attempts)."""
        ...

    # -- gauges (gauges.py) --------------------------------------------------

    def queue_depths(self, application_name: Optional[str] = None) -> List[Dict[str, Any]]:
        """Queued workflows by queue and status: ``{queue, status, depth, oldest_age_ms}``, of
        ``application_name`` and unclaimed rows (None: every application's)."""
        ...

    def executor_counts(self, application_name: str) -> Dict[str, int]:
        """Executors holding a heartbeat row, by application version."""
        ...

    # -- application ownership (ownership.py) --------------------------------

    def rename_application(self, old_name: Optional[str], new_name: str, adopt_unclaimed: bool,
                           batch_size: Optional[int]) -> ApplicationRowCounts:
        """Move ``old_name``'s rows (and unclaimed ones if asked) to ``new_name``; the counts moved."""
        ...

    # -- a caller's own transaction (connection.py) --------------------------

    def on_connection(self, dbapi_connection: Any) -> ContextManager[None]:
        """The block's operations run on the caller's connection, in its transaction (committed by the caller)."""
        ...

    # -- what the dashboard summarises (overview.py) --------------------------

    def queue_in_flight(self) -> List[Dict[str, Any]]:
        """PENDING queued workflows per queue and executor."""
        ...

    def outcomes_per_minute(self, since_ms: int) -> List[Dict[str, Any]]:
        """Workflows finished since ``since_ms``, per minute (epoch ms // 60000) and final status."""
        ...

    def list_executors(self) -> List[Dict[str, Any]]:
        """Every executor's heartbeat row, with the database's clock and its PENDING count."""
        ...

    def pending_by_version(self) -> List[Dict[str, Any]]:
        """Unfinished workflows per application version and status."""
        ...

    def workflow_messages(self, workflow_id: str, limit: int) -> List[Dict[str, Any]]:
        """Messages sent to a workflow, read or not, oldest first."""
        ...

    def workflow_streams(self, workflow_id: str, limit: int) -> List[Dict[str, Any]]:
        """A workflow's stream values by key and offset."""
        ...
