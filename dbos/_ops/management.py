"""Managing recorded workflows: list, inspect, cancel, resume, fork, delete, collect.

``Management`` works on a system database alone (what ``DBOSClient`` and
the command line use): it needs no application code and no launched
runtime, only the serializer to read recorded values and whose rows (which
application) a listing shows by default. ``EngineManagement`` does the same
for the launched engine (``DBOS`` and the admin server), and also tells the
engine: workflows it runs notice a cancellation at once, and its queue
workers look at once for work a resume or a fork enqueued.
"""

from __future__ import annotations

import math
import re
import uuid
from typing import Any, Dict, List, Optional, Sequence, Tuple, TypedDict

from .._clock import now_ms
from .._schema_check import config_schema
from .._engine.attributes import attributes_text
from .._engine.engine import Engine
from .._engine.messages import with_forks
from .._queues.queue import INTERNAL_QUEUE, work_arrived
from .._serialization import Codec
from .._status import WorkflowStatus, readable, status_from_row
from .._sysdb import Storage
from .._sysdb.ids import check_workflow_id, check_workflow_ids
from .._sysdb.records import ApplicationRowCounts, ForkRequest
from .._versions import VersionInfo
from ..error import DBOSException, DBOSInvalidArgumentError, DBOSNonExistentWorkflowError
from .filters import build_query, count

GC_BATCH_SIZE = 10_000
# Finished workflows (and steps) a rename moves per transaction, as garbage collection deletes.
RENAME_BATCH_SIZE = 10_000


class StepInfo(TypedDict):
    """One recorded operation of a workflow, as ``list_workflow_steps`` returns it."""

    function_id: int
    function_name: str
    output: Optional[Any]
    error: Optional[Exception]
    child_workflow_id: Optional[str]
    started_at_epoch_ms: Optional[int]
    completed_at_epoch_ms: Optional[int]


class Management:
    """Management of the workflows recorded in one system database."""

    def __init__(self, sysdb: Storage, codec: Codec, app_name: Optional[str] = None,
                 executor_id: Optional[str] = None, datasource: Any = None) -> None:
        self.sysdb = sysdb
        self.codec = codec
        self.app_name = app_name
        self.executor_id = executor_id
        self.datasource = datasource

    # ------------------------------------------------------------------
    # Reading
    # ------------------------------------------------------------------

    def list_workflows(self, filters: Dict[str, Any], after: Optional[Tuple[int, str]] = None) -> List[WorkflowStatus]:
        """``after``: keyset paging, the rows after this (created_at, workflow ID) in the listing's order."""
        query = build_query(self.app_name, filters)
        query.after = after
        rows = self.sysdb.list_workflows(query)
        return [status_from_row(self.codec, row) for row in rows]

    def list_queued_workflows(self, filters: Dict[str, Any]) -> List[WorkflowStatus]:
        return self.list_workflows({**filters, "queues_only": True})

    def get_workflow(self, workflow_id: str) -> Optional[WorkflowStatus]:
        row = self.sysdb.workflow_row(check_workflow_id(workflow_id))
        return status_from_row(self.codec, row) if row else None

    def require(self, workflow_id: str) -> WorkflowStatus:
        status = self.get_workflow(workflow_id)
        if status is None:
            raise DBOSNonExistentWorkflowError("workflow", workflow_id)
        return status

    def with_forks(self, workflow_ids: Sequence[str]) -> List[str]:
        """The IDs, and every workflow forked from them, transitively, that exists now."""
        return with_forks(self.sysdb, workflow_ids)

    def latest_application_version(self) -> VersionInfo:
        """The latest registered application version (``DBOSException`` if none)."""
        return latest_application_version(self.sysdb)

    def list_workflow_steps(self, workflow_id: str, load_output: bool = True,
                            limit: Optional[int] = None, offset: Optional[int] = None) -> List[StepInfo]:
        rows = self.sysdb.list_steps(check_workflow_id(workflow_id), count(limit, "limit"), count(offset, "offset"))
        return [self._step_info(row, load_output) for row in rows]

    def _step_info(self, row: Dict[str, Any], load_output: bool) -> StepInfo:
        output, error = None, None
        if load_output:
            # A message received as it was sent; an unknown format leaves it raw.
            stored = row["serialization"]
            if row["output"] is not None:
                output = readable(lambda: self.codec.for_stored(stored).load_value(row["output"]), row["output"])
            if row["error"] is not None:
                error = readable(lambda: self.codec.for_stored(stored).load_error(row["error"]), row["error"])
        return StepInfo(
            function_id=int(row["function_id"]), function_name=row["function_name"],
            output=output, error=error if isinstance(error, Exception) else None,
            child_workflow_id=row["child_workflow_id"],
            started_at_epoch_ms=row["started_at_epoch_ms"],
            completed_at_epoch_ms=row["completed_at_epoch_ms"],
        )

    # ------------------------------------------------------------------
    # Changing
    # ------------------------------------------------------------------

    def cancel(self, workflow_ids: Sequence[str], cancel_children: bool = False) -> List[str]:
        """Cancel workflows (and, if asked, every descendant); return those cancelled."""
        return self._cancel(self.with_children(workflow_ids, cancel_children))

    def resume(self, workflow_ids: Sequence[str], queue_name: Optional[str] = None) -> List[str]:
        """Re-enqueue unfinished workflows; every ID must exist. Returns those re-enqueued."""
        queue = queue_name or INTERNAL_QUEUE
        resumed = self.sysdb.resume_workflows(check_workflow_ids(workflow_ids), queue)
        self._enqueued(queue, resumed)
        return resumed

    def fork(self, workflow_id: str, start_step: int, *, new_workflow_id: Optional[str] = None,
             application_version: Optional[str] = None, queue_name: Optional[str] = None,
             queue_partition_key: Optional[str] = None,
             replacement_children: Optional[Dict[str, str]] = None,
             timeout_seconds: Optional[float] = None) -> str:
        """A new workflow that replays ``workflow_id`` up to ``start_step`` and runs on from there."""
        if isinstance(start_step, bool) or not isinstance(start_step, int) or start_step < 1:
            raise DBOSException(f"start_step must be an integer of 1 or more, got {start_step!r}")
        if timeout_seconds is not None and not timeout_seconds > 0:
            raise DBOSException(f"timeout_seconds must be positive, got {timeout_seconds!r}")
        check_workflow_ids([*(replacement_children or {}).keys(), *(replacement_children or {}).values()],
                           "replacement_children")
        request = ForkRequest(
            original_id=check_workflow_id(workflow_id),
            new_id=check_workflow_id(new_workflow_id, "new_workflow_id") or str(uuid.uuid4()),
            start_step=start_step, application_version=application_version,
            queue_name=queue_name or INTERNAL_QUEUE, queue_partition_key=queue_partition_key,
            replacement_children=dict(replacement_children or {}),
            timeout_ms=int(timeout_seconds * 1000) if timeout_seconds is not None else None,
            executor_id=self.executor_id,
        )
        forked = self.sysdb.fork_workflow(request)
        self._enqueued(request.queue_name, [forked])
        return forked

    def delete(self, workflow_ids: Sequence[str], delete_children: bool = False) -> List[str]:
        """Delete workflows and all they recorded; irreversible."""
        ids = self.with_children(workflow_ids, delete_children)
        self._delete_outputs(ids)
        self.sysdb.delete_workflows(ids)
        return ids

    def update_attributes(self, workflow_id: str, attributes: Optional[Dict[str, Any]]) -> None:
        """Replace a workflow's attributes (None clears them)."""
        text = attributes_text(attributes)
        if not self.sysdb.set_attributes(check_workflow_id(workflow_id), text):
            raise DBOSNonExistentWorkflowError("workflow", workflow_id)

    def set_delay(self, workflow_id: str, delay_seconds: Optional[float] = None,
                  delay_until_epoch_ms: Optional[int] = None) -> None:
        """Make a DELAYED workflow due ``delay_seconds`` from now, or at ``delay_until_epoch_ms``."""
        due = delay_until(delay_seconds, delay_until_epoch_ms)
        queue = self.sysdb.set_workflow_delay(check_workflow_id(workflow_id), due)
        if queue is None:
            status = self.sysdb.workflow_statuses([workflow_id]).get(workflow_id)
            if status is None:
                raise DBOSNonExistentWorkflowError("workflow", workflow_id)
            raise DBOSException(f"Workflow {workflow_id} is {status}, not DELAYED: only a delayed "
                                "workflow's delay can be changed")
        self._enqueued(queue, [])  # due now, perhaps: its queue's worker here looks

    def with_children(self, workflow_ids: Sequence[str], children: bool) -> List[str]:
        """The IDs, without repeats, and with every descendant if ``children``."""
        ids = list(dict.fromkeys(check_workflow_ids(workflow_ids)))
        return self.sysdb.descendants(ids) if children and ids else ids

    def _delete_outputs(self, workflow_ids: List[str]) -> None:
        # The application database first: if the process dies in between,
        # the system rows still exist and nothing replays a stale output.
        if self.datasource is not None and workflow_ids:
            self.datasource.delete_outputs(workflow_ids)

    def garbage_collect(self, cutoff_epoch_timestamp_ms: Optional[int] = None,
                        rows_threshold: Optional[int] = None,
                        batch_size: int = GC_BATCH_SIZE) -> int:
        """Delete finished workflows created before the cutoff, or beyond the newest
        ``rows_threshold``; return how many were deleted."""
        cutoff = self._gc_cutoff(cutoff_epoch_timestamp_ms, rows_threshold)
        if cutoff is None:
            return 0
        deleted = 0
        while True:
            batch = self.sysdb.collectable_workflows(cutoff, self._owners(), batch_size)
            if not batch:
                return deleted
            self._delete_outputs(batch)
            deleted += self.sysdb.delete_workflows(batch)

    def rename_application(self, old_name: Optional[str], new_name: str, *,
                           batch_size: Optional[int] = RENAME_BATCH_SIZE,
                           adopt_unclaimed_rows: bool = False) -> ApplicationRowCounts:
        """Give ``new_name`` the rows ``old_name`` owns and, with ``adopt_unclaimed_rows``,
        those no application owns; the rows moved, by kind. Nothing is written on bad input."""
        check_rename(old_name, new_name, batch_size, adopt_unclaimed_rows)
        return self.sysdb.rename_application(old_name, new_name, adopt_unclaimed_rows, batch_size)

    def _owners(self) -> Optional[List[str]]:
        return [self.app_name] if self.app_name else None

    def _gc_cutoff(self, cutoff: Optional[int], rows_threshold: Optional[int]) -> Optional[int]:
        count(cutoff, "cutoff_epoch_timestamp_ms")
        if rows_threshold is not None:
            count(rows_threshold, "rows_threshold")
            nth = self.sysdb.nth_newest_created_at(rows_threshold, self._owners())
            if nth is not None:
                cutoff = max(cutoff or 0, nth)
        return cutoff

    def global_timeout(self, cutoff_epoch_timestamp_ms: int) -> List[str]:
        """Cancel every active workflow created at or before the cutoff."""
        count(cutoff_epoch_timestamp_ms, "cutoff_epoch_timestamp_ms")
        ids = self.sysdb.active_created_before(cutoff_epoch_timestamp_ms, self._owners())
        return self._cancel(ids) if ids else []

    def _cancel(self, workflow_ids: List[str]) -> List[str]:
        return self.sysdb.cancel_workflows(workflow_ids)

    def _enqueued(self, queue_name: str, workflow_ids: List[str]) -> None:
        """Workflows were put on ``queue_name`` (by a resume or a fork)."""


class EngineManagement(Management):
    """Management of the launched engine's workflows, as its application."""

    def __init__(self, engine: Engine) -> None:
        identity = engine.identity
        super().__init__(engine.sysdb, engine.codec, identity.app_name, identity.executor_id,
                         engine.datasource)
        self.engine = engine

    def _cancel(self, workflow_ids: List[str]) -> List[str]:
        return self.engine.cancel(workflow_ids)  # those running here stop at once

    def _enqueued(self, queue_name: str, workflow_ids: List[str]) -> None:
        self.engine.forget_cancelled(workflow_ids)  # a resumed workflow may run here again
        work_arrived(queue_name)  # this process's worker looks now


def latest_application_version(sysdb: Storage) -> VersionInfo:
    """The latest registered application version (``DBOSException`` if none)."""
    versions = sysdb.list_application_versions()
    if not versions:
        raise DBOSException("No application versions are registered: launch the application once first")
    return versions[0]


def delay_until(delay_seconds: Optional[float], delay_until_epoch_ms: Optional[int]) -> int:
    """The epoch millisecond a delay ends: exactly one of the two, non-negative
    (``DBOSInvalidArgumentError`` otherwise)."""
    if (delay_seconds is None) == (delay_until_epoch_ms is None):
        raise DBOSInvalidArgumentError("delay_seconds and delay_until_epoch_ms",
                                       (delay_seconds, delay_until_epoch_ms), "give exactly one of them")
    if delay_seconds is not None:
        if isinstance(delay_seconds, bool) or not isinstance(delay_seconds, (int, float)) or not (
                math.isfinite(delay_seconds) and delay_seconds >= 0):
            raise DBOSInvalidArgumentError("delay_seconds", delay_seconds, "give a non-negative number")
        return now_ms() + int(delay_seconds * 1000)
    if isinstance(delay_until_epoch_ms, bool) or not isinstance(delay_until_epoch_ms, (int, float)) or not (
            math.isfinite(delay_until_epoch_ms) and delay_until_epoch_ms >= 0):
        raise DBOSInvalidArgumentError("delay_until_epoch_ms", delay_until_epoch_ms,
                                       "give a non-negative number of epoch milliseconds")
    return int(delay_until_epoch_ms)


def check_rename(old_name: Optional[str], new_name: str, batch_size: Optional[int],
                 adopt_unclaimed_rows: bool) -> None:
    """Raise ``DBOSInvalidArgumentError`` for arguments a rename cannot use."""
    if not isinstance(adopt_unclaimed_rows, bool):
        raise DBOSInvalidArgumentError("adopt_unclaimed_rows", adopt_unclaimed_rows, "pass True or False")
    if old_name is None and not adopt_unclaimed_rows:
        raise DBOSInvalidArgumentError("old_name", old_name, "nothing to move: name the application to "
                                       "rename, pass adopt_unclaimed_rows=True, or both")
    if old_name is not None and (not isinstance(old_name, str) or not old_name):
        raise DBOSInvalidArgumentError("old_name", old_name, "give the application's previous name, "
                                       "or None (with adopt_unclaimed_rows=True) to move only unclaimed rows")
    check_app_name("new_name", new_name)
    if old_name == new_name:
        raise DBOSInvalidArgumentError("new_name", new_name, "it is already old_name; nothing to rename")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise DBOSInvalidArgumentError("batch_size", batch_size, "give a positive integer, or None to move "
                                       "every row in one transaction")


def check_app_name(argument: str, name: object) -> None:
    """Raise unless ``name`` meets the rule of the configuration's ``name``."""
    rule = config_schema()["properties"]["name"]
    # fullmatch of the pattern's body: its "$" would also let a trailing newline through.
    if not (isinstance(name, str) and rule["minLength"] <= len(name) <= rule["maxLength"]
            and re.fullmatch(rule["pattern"].strip("^$"), name)):
        raise DBOSInvalidArgumentError(
            argument, name, f"an application name has {rule['minLength']} to {rule['maxLength']} "
            f"characters, {rule['x-rule']}")
