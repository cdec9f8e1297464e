"""Workflow management on a system database, shared by ``DBOS``, ``DBOSClient``,
the command line and the admin server.

Nothing here needs the application's code or a launched runtime: only the
system database, the serializer to read recorded values, and whose rows
(which application) a listing shows by default.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime
from typing import Any, Callable, Dict, List, Optional, Sequence, TypedDict, Union

from ..error import DBOSException, DBOSNonExistentWorkflowError
from .._engine.introspection import status_from_row
from .._queues.queue import INTERNAL_QUEUE
from .._serialization import Codec
from .._status import WorkflowStatus, WorkflowStatusString
from .._sysdb import SystemDatabase
from .._sysdb.management import ForkRequest, ListQuery

logger = logging.getLogger("dbos")

GC_BATCH_SIZE = 10_000

StrOrList = Union[str, Sequence[str], None]
TimeArg = Union[str, datetime, None]


class StepInfo(TypedDict):
    """One recorded operation of a workflow, as ``list_workflow_steps`` returns it."""

    function_id: int
    function_name: str
    output: Optional[Any]
    error: Optional[Exception]
    child_workflow_id: Optional[str]
    started_at_epoch_ms: Optional[int]
    completed_at_epoch_ms: Optional[int]


# ----------------------------------------------------------------------
# Filters
# ----------------------------------------------------------------------

_VALID_STATUSES = [s.value for s in WorkflowStatusString]
_TIME_FILTERS = {
    "start_time": ("created_at", ">="),
    "end_time": ("created_at", "<="),
    "completed_after": ("completed_at", ">="),
    "completed_before": ("completed_at", "<="),
    "dequeued_after": ("started_at_epoch_ms", ">="),
    "dequeued_before": ("started_at_epoch_ms", "<="),
}
_LIST_FILTERS = ("workflow_ids", "name", "app_version", "forked_from", "parent_workflow_id",
                 "user", "queue_name", "executor_id", "schedule_name", "workflow_id_prefix")


def as_list(value: StrOrList, what: str) -> Optional[List[str]]:
    """A filter given as one string or several, as a list (None: no filter)."""
    if value is None:
        return None
    values = [value] if isinstance(value, str) else list(value)
    for item in values:
        if not isinstance(item, str):
            raise DBOSException(f"{what} must be a string or a list of strings, got {item!r}")
    return values


def epoch_ms(value: TimeArg, what: str) -> Optional[int]:
    """An ISO-8601 time (or datetime) in epoch milliseconds; naive times are local."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    try:
        return int(datetime.fromisoformat(str(value)).timestamp() * 1000)
    except ValueError:
        raise DBOSException(
            f"{what} must be an ISO-8601 time such as 2026-01-31T12:00:00, got {value!r}"
        ) from None


def _statuses(value: StrOrList) -> Optional[List[str]]:
    statuses = as_list(value, "status")
    for status in statuses or []:
        if status not in _VALID_STATUSES:
            raise DBOSException(f"Unknown workflow status {status!r}: use one of {', '.join(_VALID_STATUSES)}")
    return statuses


def _count(value: Optional[int], what: str) -> Optional[int]:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise DBOSException(f"{what} must be a non-negative integer, got {value!r}")
    return value


def build_query(own_app: Optional[str], filters: Dict[str, Any]) -> ListQuery:
    """A ``ListQuery`` from ``list_workflows`` keyword arguments, each checked."""
    query = ListQuery(
        status=_statuses(filters.get("status")),
        queues_only=bool(filters.get("queues_only")),
        was_forked_from=filters.get("was_forked_from"),
        has_parent=filters.get("has_parent"),
        limit=_count(filters.get("limit"), "limit"),
        offset=_count(filters.get("offset"), "offset"),
        sort_desc=bool(filters.get("sort_desc")),
        load_input=filters.get("load_input", True) is not False,
        load_output=filters.get("load_output", True) is not False,
    )
    for key in _LIST_FILTERS:
        setattr(query, key, as_list(filters.get(key), key))
    for key, target in _TIME_FILTERS.items():
        stamp = epoch_ms(filters.get(key), key)
        if stamp is not None:
            query.times[target] = stamp
    attributes = filters.get("attributes")
    if attributes is not None:
        query.attributes = _attributes_json(attributes)
    query.application_names = _owners(own_app, filters.get("application_name"), query.workflow_ids)
    return query


def _attributes_json(attributes: Any) -> str:
    if not isinstance(attributes, dict):
        raise DBOSException(f"attributes must be a dictionary, got {attributes!r}")
    try:
        return json.dumps(attributes)
    except (TypeError, ValueError) as exc:
        raise DBOSException(f"attributes must be JSON-serializable: {exc}") from None


def _owners(own_app: Optional[str], asked: StrOrList, ids: Optional[List[str]]) -> Optional[List[str]]:
    """Whose rows a listing shows: those asked for, else this app's; unclaimed rows always."""
    names = as_list(asked, "application_name")
    if names is not None:
        return names
    if ids is not None or own_app is None:
        return None  # lookups by ID are not scoped to an application
    return [own_app]


# ----------------------------------------------------------------------
# Operations
# ----------------------------------------------------------------------


class Operations:
    """Management of the workflows recorded in one system database."""

    def __init__(self, sysdb: SystemDatabase, codec: Codec, app_name: Optional[str] = None,
                 executor_id: Optional[str] = None, datasource: Any = None) -> None:
        self.sysdb = sysdb
        self.codec = codec
        self.app_name = app_name
        self.executor_id = executor_id
        self.datasource = datasource

    def list_workflows(self, filters: Dict[str, Any]) -> List[WorkflowStatus]:
        rows = self.sysdb.management.list_workflows(build_query(self.app_name, filters))
        return [status_from_row(self.codec, row) for row in rows]

    def list_queued_workflows(self, filters: Dict[str, Any]) -> List[WorkflowStatus]:
        return self.list_workflows({**filters, "queues_only": True})

    def get_workflow(self, workflow_id: str) -> Optional[WorkflowStatus]:
        row = self.sysdb.workflows.get(workflow_id)
        return status_from_row(self.codec, row) if row else None

    def list_workflow_steps(self, workflow_id: str, load_output: bool = True,
                            limit: Optional[int] = None, offset: Optional[int] = None) -> List[StepInfo]:
        rows = self.sysdb.management.list_steps(
            workflow_id, _count(limit, "limit"), _count(offset, "offset"))
        return [self._step_info(row, load_output) for row in rows]

    def _step_info(self, row: Dict[str, Any], load_output: bool) -> StepInfo:
        output, error = None, None
        if load_output:
            output = self._readable(lambda: self.codec.load_value(row["output"]), row["output"])
            error = self.codec.load_error(row["error"]) if row["error"] is not None else None
        return StepInfo(
            function_id=int(row["function_id"]), function_name=row["function_name"],
            output=output, error=error if isinstance(error, Exception) else None,
            child_workflow_id=row["child_workflow_id"],
            started_at_epoch_ms=row["started_at_epoch_ms"],
            completed_at_epoch_ms=row["completed_at_epoch_ms"],
        )

    @staticmethod
    def _readable(load: Callable[[], Any], raw: Optional[str]) -> Any:
        if raw is None:
            return None
        try:
            return load()
        except Exception as exc:
            logger.warning(f"Could not deserialize a recorded step output ({exc}); showing it raw")
            return raw

    def cancel(self, workflow_ids: Sequence[str], cancel_children: bool = False) -> List[str]:
        """Cancel workflows (and, if asked, every descendant); return those cancelled."""
        return self.sysdb.workflows.cancel(self.with_children(workflow_ids, cancel_children))

    def resume(self, workflow_ids: Sequence[str], queue_name: Optional[str] = None) -> List[str]:
        """Re-enqueue unfinished workflows; every ID must exist."""
        return self.sysdb.management.resume(list(workflow_ids), queue_name or INTERNAL_QUEUE)

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
        request = ForkRequest(
            original_id=workflow_id, new_id=new_workflow_id or str(uuid.uuid4()),
            start_step=start_step, application_version=application_version,
            queue_name=queue_name or INTERNAL_QUEUE, queue_partition_key=queue_partition_key,
            replacement_children=dict(replacement_children or {}),
            timeout_ms=int(timeout_seconds * 1000) if timeout_seconds is not None else None,
            executor_id=self.executor_id,
        )
        return self.sysdb.management.fork(request)

    def delete(self, workflow_ids: Sequence[str], delete_children: bool = False) -> List[str]:
        """Delete workflows and all they recorded; irreversible."""
        ids = self.with_children(workflow_ids, delete_children)
        self._delete_outputs(ids)
        self.sysdb.management.delete(ids)
        return ids

    def with_children(self, workflow_ids: Sequence[str], children: bool) -> List[str]:
        """The IDs, without repeats, and with every descendant if ``children``."""
        ids = list(dict.fromkeys(workflow_ids))
        return self.sysdb.management.descendants(ids) if children and ids else ids

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
        owners = [self.app_name] if self.app_name else None
        deleted = 0
        while True:
            batch = self.sysdb.management.collectable(cutoff, owners, batch_size)
            if not batch:
                return deleted
            self._delete_outputs(batch)
            deleted += self.sysdb.management.delete(batch)

    def _gc_cutoff(self, cutoff: Optional[int], rows_threshold: Optional[int]) -> Optional[int]:
        _count(cutoff, "cutoff_epoch_timestamp_ms")
        if rows_threshold is not None:
            _count(rows_threshold, "rows_threshold")
            owners = [self.app_name] if self.app_name else None
            nth = self.sysdb.management.nth_newest_created_at(rows_threshold, owners)
            if nth is not None:
                cutoff = max(cutoff or 0, nth)
        return cutoff

    def global_timeout(self, cutoff_epoch_timestamp_ms: int) -> List[str]:
        """Cancel every active workflow created at or before the cutoff."""
        owners = [self.app_name] if self.app_name else None
        _count(cutoff_epoch_timestamp_ms, "cutoff_epoch_timestamp_ms")
        ids = self.sysdb.management.active_created_before(cutoff_epoch_timestamp_ms, owners)
        return self.sysdb.workflows.cancel(ids) if ids else []

    def require(self, workflow_id: str) -> WorkflowStatus:
        status = self.get_workflow(workflow_id)
        if status is None:
            raise DBOSNonExistentWorkflowError("workflow", workflow_id)
        return status
