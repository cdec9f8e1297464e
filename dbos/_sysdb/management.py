"""Operating on recorded workflows: list, inspect, resume, fork, delete, collect.

Every filter value travels as a bound parameter, never as SQL text, so a
name with quotes, percent signs or SQL keywords is only ever a value. Each
operation that changes several rows does so in one transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from ..error import DBOSConflictingWorkflowError, DBOSException, DBOSNonExistentWorkflowError
from .workflows import now_ms

if TYPE_CHECKING:
    from .storage import SystemDatabase

ACTIVE = ("PENDING", "ENQUEUED", "DELAYED")
_FINISHED = ("SUCCESS", "ERROR")
_LARGE_COLUMNS = {"inputs": "load_input", "output": "load_output", "error": "load_output"}
_STEP_COLUMNS = (
    "function_id", "function_name", "output", "error", "child_workflow_id",
    "started_at_epoch_ms", "completed_at_epoch_ms",
)
# Copied from the original to a fork; the rest of the fork's row is its own.
_FORK_COPIED = (
    "name", "class_name", "config_name", "application_id", "authenticated_user",
    "assumed_role", "authenticated_roles", "inputs", "serialization", "attributes",
    "application_name",
)


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
    # (column, operator) -> epoch ms
    times: Dict[Tuple[str, str], int] = field(default_factory=dict)
    queues_only: bool = False
    was_forked_from: Optional[bool] = None
    has_parent: Optional[bool] = None
    attributes: Optional[str] = None  # JSON text, matched by containment
    # Rows of these apps and unclaimed rows; None means every row.
    application_names: Optional[List[str]] = None
    limit: Optional[int] = None
    offset: Optional[int] = None
    sort_desc: bool = False
    load_input: bool = True
    load_output: bool = True


_IN_FILTERS = {
    "workflow_ids": "workflow_uuid",
    "status": "status",
    "name": "name",
    "app_version": "application_version",
    "forked_from": "forked_from",
    "parent_workflow_id": "parent_workflow_id",
    "user": "authenticated_user",
    "queue_name": "queue_name",
    "executor_id": "executor_id",
    "schedule_name": "schedule_name",
}


@dataclass(frozen=True)
class ForkRequest:
    original_id: str
    new_id: str
    start_step: int
    application_version: Optional[str] = None
    queue_name: str = "_dbos_internal_queue"
    queue_partition_key: Optional[str] = None
    replacement_children: Dict[str, str] = field(default_factory=dict)
    timeout_ms: Optional[int] = None
    executor_id: Optional[str] = None


class ManagementStore:
    def __init__(self, sysdb: "SystemDatabase") -> None:
        self._sysdb = sysdb
        backend = sysdb.backend
        self._p = backend.placeholder
        self._backend = backend
        self._status = backend.qualified("workflow_status")
        self._steps = backend.qualified("operation_outputs")
        self._events = backend.qualified("workflow_events")
        self._history = backend.qualified("workflow_events_history")
        self._streams = backend.qualified("streams")
        self._columns = [f.column_name for f in sysdb.models.workflow_status._meta.sorted_fields]

    def _marks(self, values: Sequence[Any]) -> str:
        return ", ".join([self._p] * len(values))

    def _read(self, sql: str, params: Sequence[Any]) -> List[Tuple[Any, ...]]:
        rows: List[Tuple[Any, ...]] = self._sysdb.run(
            lambda: self._sysdb.execute(sql, list(params)).fetchall(), transaction=False
        )
        return rows

    # ------------------------------------------------------------------
    # Listing
    # ------------------------------------------------------------------

    def list_workflows(self, query: ListQuery) -> List[Dict[str, Any]]:
        """Rows of ``workflow_status`` matching ``query``, ordered by creation."""
        columns = [c for c in self._columns if c not in _LARGE_COLUMNS
                   or getattr(query, _LARGE_COLUMNS[c])]
        where, params = self._where(query)
        sql = (
            f"SELECT {', '.join(columns)} FROM {self._status}"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY created_at {0}, workflow_uuid {0}".format("DESC" if query.sort_desc else "ASC")
        )
        sql += self._backend.limit_offset(query.limit, query.offset)
        return [dict(zip(columns, row)) for row in self._read(sql, params)]

    def _where(self, query: ListQuery) -> Tuple[List[str], List[Any]]:
        where: List[str] = []
        params: List[Any] = []

        def add(clause: str, *values: Any) -> None:
            where.append(clause)
            params.extend(values)

        for attr, column in _IN_FILTERS.items():
            values = getattr(query, attr)
            if values is not None:
                add(f"{column} IN ({self._marks(values)})" if values else "1 = 0", *values)
        for (column, op), stamp in query.times.items():
            add(f"{column} {op} {self._p}", stamp)
        self._where_flags(query, add)
        return where, params

    def _where_flags(self, query: ListQuery, add: Any) -> None:
        p = self._p
        if query.workflow_id_prefix is not None:
            likes = " OR ".join([f"workflow_uuid LIKE {p} ESCAPE '!'"] * len(query.workflow_id_prefix))
            add(f"({likes})" if likes else "1 = 0", *[_like_prefix(x) for x in query.workflow_id_prefix])
        if query.queues_only:
            add("queue_name IS NOT NULL")
            if query.status is None:
                add(f"status IN ({self._marks(ACTIVE)})", *ACTIVE)
        if query.was_forked_from is not None:
            add(f"was_forked_from = {p}", query.was_forked_from)
        if query.has_parent is not None:
            add(f"parent_workflow_id IS {'NOT ' if query.has_parent else ''}NULL")
        if query.attributes is not None:
            contains = self._backend.json_contains("attributes")
            if contains is None:
                raise DBOSException("Filtering workflows by attributes needs PostgreSQL; "
                                    "SQLite cannot match JSON containment")
            add(contains, query.attributes)
        if query.application_names is not None:
            names = query.application_names
            add(f"(application_name IS NULL OR application_name IN ({self._marks(names)}))"
                if names else "application_name IS NULL", *names)

    def list_steps(self, workflow_id: str, limit: Optional[int] = None,
                   offset: Optional[int] = None) -> List[Dict[str, Any]]:
        sql = (
            f"SELECT {', '.join(_STEP_COLUMNS)} FROM {self._steps} "
            f"WHERE workflow_uuid = {self._p} ORDER BY function_id"
        )
        sql += self._backend.limit_offset(limit, offset)
        return [dict(zip(_STEP_COLUMNS, row)) for row in self._read(sql, [workflow_id])]

    def _existing(self, workflow_ids: Sequence[str]) -> List[str]:
        """The IDs that exist; on the connection of the surrounding ``run``."""
        sql = f"SELECT workflow_uuid FROM {self._status} WHERE workflow_uuid IN ({self._marks(workflow_ids)})"
        return [r[0] for r in self._sysdb.execute(sql, list(workflow_ids)).fetchall()]

    def descendants(self, workflow_ids: Sequence[str]) -> List[str]:
        """``workflow_ids`` and every workflow started under them, at any depth."""
        found: Dict[str, None] = dict.fromkeys(workflow_ids)
        frontier = list(workflow_ids)
        while frontier:
            sql = (f"SELECT workflow_uuid FROM {self._status} "
                   f"WHERE parent_workflow_id IN ({self._marks(frontier)})")
            children = [r[0] for r in self._read(sql, frontier) if r[0] not in found]
            found.update(dict.fromkeys(children))
            frontier = children
        return list(found)

    # ------------------------------------------------------------------
    # Resume and fork
    # ------------------------------------------------------------------

    def resume(self, workflow_ids: Sequence[str], queue_name: str) -> List[str]:
        """Put unfinished workflows back on ``queue_name``, attempts reset.

        Every ID must exist, or nothing changes. Returns the IDs re-enqueued.
        """
        p, stamp = self._p, now_ms()
        sql = (
            f"UPDATE {self._status} SET status = 'ENQUEUED', queue_name = {p}, "
            "recovery_attempts = 0, workflow_deadline_epoch_ms = NULL, deduplication_id = NULL, "
            "started_at_epoch_ms = NULL, completed_at = NULL, delay_until_epoch_ms = NULL, "
            f"queue_partition_key = NULL, updated_at = {p} "
            f"WHERE workflow_uuid IN ({self._marks(workflow_ids)}) "
            f"AND status NOT IN ({self._marks(_FINISHED)}) RETURNING workflow_uuid"
        )

        def work() -> List[str]:
            self._require(workflow_ids)
            rows = self._sysdb.execute(sql, [queue_name, stamp, *workflow_ids, *_FINISHED]).fetchall()
            return [r[0] for r in rows]

        return self._sysdb.run(work) if workflow_ids else []

    def _require(self, workflow_ids: Sequence[str]) -> None:
        present = set(self._existing(workflow_ids))
        missing = [w for w in workflow_ids if w not in present]
        if missing:
            raise DBOSNonExistentWorkflowError("workflow", ", ".join(missing))

    def fork(self, request: ForkRequest) -> str:
        """Create the fork as ENQUEUED, with the original's history before its start step."""
        return self._sysdb.run(lambda: self._fork(request))

    def _fork(self, request: ForkRequest) -> str:
        original = self._fork_source(request.original_id)
        if self._existing_fork(request):
            return request.new_id
        self._insert_fork(request, original)
        self._sysdb.execute(
            f"UPDATE {self._status} SET was_forked_from = {self._p} WHERE workflow_uuid = {self._p}",
            [True, request.original_id],
        )
        if request.start_step > 1:
            self._copy_history(request)
        return request.new_id

    def _fork_source(self, workflow_id: str) -> Dict[str, Any]:
        sql = (f"SELECT {', '.join(_FORK_COPIED)}, workflow_timeout_ms FROM {self._status} "
               f"WHERE workflow_uuid = {self._p}")
        row = self._sysdb.execute(sql, [workflow_id]).fetchone()
        if row is None:
            raise DBOSNonExistentWorkflowError("workflow", workflow_id)
        return dict(zip((*_FORK_COPIED, "workflow_timeout_ms"), row))

    def _existing_fork(self, request: ForkRequest) -> bool:
        """A fork already made with this ID (a retried call) is that fork."""
        sql = f"SELECT forked_from FROM {self._status} WHERE workflow_uuid = {self._p}"
        row = self._sysdb.execute(sql, [request.new_id]).fetchone()
        if row is None:
            return False
        if row[0] != request.original_id:
            raise DBOSConflictingWorkflowError(
                request.new_id, f"cannot fork {request.original_id} into {request.new_id}: "
                "a different workflow already has that ID")
        return True

    def _insert_fork(self, request: ForkRequest, original: Dict[str, Any]) -> None:
        stamp = now_ms()
        row = {column: original[column] for column in _FORK_COPIED}
        timeout = request.timeout_ms if request.timeout_ms is not None else original["workflow_timeout_ms"]
        row.update(
            workflow_uuid=request.new_id, status="ENQUEUED", queue_name=request.queue_name,
            queue_partition_key=request.queue_partition_key, forked_from=request.original_id,
            application_version=request.application_version, workflow_timeout_ms=timeout,
            executor_id=request.executor_id, created_at=stamp, updated_at=stamp,
            recovery_attempts=0, priority=0, owner_xid=uuid.uuid4().hex,
        )
        sql = f"INSERT INTO {self._status} ({', '.join(row)}) VALUES ({self._marks(list(row))})"
        self._sysdb.execute(sql, list(row.values()))

    def _copy_history(self, request: ForkRequest) -> None:
        p, new, old, step = self._p, request.new_id, request.original_id, request.start_step
        for sql in (
            f"INSERT INTO {self._steps} (workflow_uuid, {', '.join(_STEP_COLUMNS)}, serialization, "
            f"application_name) SELECT {p}, {', '.join(_STEP_COLUMNS)}, serialization, application_name "
            f"FROM {self._steps} WHERE workflow_uuid = {p} AND function_id < {p}",
            f"INSERT INTO {self._history} (workflow_uuid, function_id, key, value, serialization) "
            f"SELECT {p}, function_id, key, value, serialization FROM {self._history} "
            f"WHERE workflow_uuid = {p} AND function_id < {p}",
            f"INSERT INTO {self._streams} (workflow_uuid, key, value, \"offset\", function_id, "
            f"serialization) SELECT {p}, key, value, \"offset\", function_id, serialization "
            f"FROM {self._streams} WHERE workflow_uuid = {p} AND function_id < {p}",
        ):
            self._sysdb.execute(sql, [new, old, step])
        # The fork's latest value of each event is the last one set before its start step.
        self._sysdb.execute(
            f"INSERT INTO {self._events} (workflow_uuid, key, value, serialization) "
            f"SELECT h.workflow_uuid, h.key, h.value, h.serialization FROM {self._history} h "
            f"WHERE h.workflow_uuid = {p} AND h.function_id = (SELECT MAX(g.function_id) "
            f"FROM {self._history} g WHERE g.workflow_uuid = h.workflow_uuid AND g.key = h.key)",
            [new],
        )
        for old_child, new_child in request.replacement_children.items():
            self._sysdb.execute(
                f"UPDATE {self._steps} SET child_workflow_id = {p} "
                f"WHERE workflow_uuid = {p} AND child_workflow_id = {p}",
                [new_child, new, old_child],
            )

    # ------------------------------------------------------------------
    # Deleting
    # ------------------------------------------------------------------

    def delete(self, workflow_ids: Sequence[str]) -> int:
        """Delete workflows; their steps, events, messages and streams go with them."""
        if not workflow_ids:
            return 0
        sql = f"DELETE FROM {self._status} WHERE workflow_uuid IN ({self._marks(workflow_ids)})"
        cursor = self._sysdb.run(lambda: self._sysdb.execute(sql, list(workflow_ids)))
        return int(cursor.rowcount or 0)

    def collectable(self, cutoff_ms: int, application_names: Optional[List[str]],
                    batch_size: int) -> List[str]:
        """Up to ``batch_size`` finished workflows created before ``cutoff_ms``, oldest first."""
        where, params = self._where(ListQuery(application_names=application_names))
        where += [f"created_at < {self._p}", f"status NOT IN ({self._marks(ACTIVE)})"]
        sql = (f"SELECT workflow_uuid FROM {self._status} WHERE {' AND '.join(where)} "
               f"ORDER BY created_at LIMIT {int(batch_size)}")
        return [r[0] for r in self._read(sql, [*params, cutoff_ms, *ACTIVE])]

    def nth_newest_created_at(self, n: int, application_names: Optional[List[str]]) -> Optional[int]:
        """``created_at`` of the ``n``-th newest workflow; None if there are fewer."""
        where, params = self._where(ListQuery(application_names=application_names))
        sql = (f"SELECT created_at FROM {self._status}"
               + (f" WHERE {' AND '.join(where)}" if where else "")
               + f" ORDER BY created_at DESC LIMIT 1 OFFSET {max(int(n) - 1, 0)}")
        rows = self._read(sql, params)
        return int(rows[0][0]) if rows else None

    def active_created_before(self, cutoff_ms: int, application_names: Optional[List[str]]) -> List[str]:
        where, params = self._where(ListQuery(application_names=application_names))
        where += [f"created_at <= {self._p}", f"status IN ({self._marks(ACTIVE)})"]
        sql = f"SELECT workflow_uuid FROM {self._status} WHERE {' AND '.join(where)}"
        return [r[0] for r in self._read(sql, [*params, cutoff_ms, *ACTIVE])]


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching ``prefix`` literally at the start (escape '!')."""
    return prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"
