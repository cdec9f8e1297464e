"""Listing workflows by filters, for operators: ``list_workflows`` and what
garbage collection and global timeouts select.

A listing is the one statement here assembled per call, from constant
clauses: one per filter given, each binding its values by name, so a filter
value with quotes, percent signs or SQL keywords is only ever a value.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from .._status import ACTIVE_STATUSES
from ..error import DBOSException
from .connection import Connection
from .records import ListQuery
from .statements import Statement, shaped

# Filters that list the values a column may take.
IN_CLAUSES = {
    "workflow_ids": "workflow_uuid IN (:workflow_ids)",
    "status": "status IN (:status)",
    "name": "name IN (:name)",
    "app_version": "application_version IN (:app_version)",
    "forked_from": "forked_from IN (:forked_from)",
    "parent_workflow_id": "parent_workflow_id IN (:parent_workflow_id)",
    "user": "authenticated_user IN (:user)",
    "queue_name": "queue_name IN (:queue_name)",
    "executor_id": "executor_id IN (:executor_id)",
    "schedule_name": "schedule_name IN (:schedule_name)",
}
# Filters on a time, each an epoch-ms bound.
TIME_CLAUSES = {
    "start_time": "created_at >= :start_time",
    "end_time": "created_at <= :end_time",
    "completed_after": "completed_at >= :completed_after",
    "completed_before": "completed_at <= :completed_before",
    "dequeued_after": "started_at_epoch_ms >= :dequeued_after",
    "dequeued_before": "started_at_epoch_ms <= :dequeued_before",
}
PREFIX = ("EXISTS (SELECT 1 FROM (VALUES :workflow_id_prefix) AS prefixes "
          "WHERE workflow_uuid LIKE prefixes.column1 ESCAPE '!')")
NOTHING = "1 = 0"
QUEUED = "queue_name IS NOT NULL"
_ACTIVE_LIST = ", ".join(f"'{status}'" for status in sorted(ACTIVE_STATUSES))
ACTIVE = f"status IN ({_ACTIVE_LIST})"
FINISHED = f"status NOT IN ({_ACTIVE_LIST})"
FORKED = "was_forked_from = :was_forked_from"
HAS_PARENT = {True: "parent_workflow_id IS NOT NULL", False: "parent_workflow_id IS NULL"}
# Rows of these applications, and unclaimed rows.
OWNED = "(application_name IS NULL OR application_name IN (:application_names))"
# The rows after a page's last one, in either order (the order's own tie-break).
AFTER = {False: "(created_at > :after_at OR (created_at = :after_at AND workflow_uuid > :after_id))",
         True: "(created_at < :after_at OR (created_at = :after_at AND workflow_uuid < :after_id))"}
ORDER = {False: " ORDER BY created_at ASC, workflow_uuid ASC", True: " ORDER BY created_at DESC, workflow_uuid DESC"}
PAGE = " LIMIT :limit OFFSET :offset"
# Columns a listing leaves out unless asked, by the flag that asks.
LARGE_COLUMNS = {"inputs": "load_input", "output": "load_output", "error": "load_output"}

DESCENDANTS = Statement("""
    SELECT workflow_uuid FROM {workflow_status} WHERE parent_workflow_id IN (:parent_ids)
""")


def like_prefix(prefix: str) -> str:
    """A LIKE pattern matching ``prefix`` literally at the start (escape '!')."""
    return prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"


class ListingRows(Connection):
    def list_workflows(self, query: ListQuery) -> List[Dict[str, Any]]:
        """Rows of ``workflow_status`` matching ``query``, ordered by creation."""
        columns = [c for c in self._status_columns() if c not in LARGE_COLUMNS
                   or getattr(query, LARGE_COLUMNS[c])]
        where, params = self._where(query)
        text = f"SELECT {', '.join(columns)} FROM {{workflow_status}}{where}{ORDER[query.sort_desc]}{PAGE}"
        params.update(limit=self.backend.limit_param(query.limit), offset=query.offset or 0)
        return [dict(zip(columns, row)) for row in self.rows(shaped(text), **params)]

    def _status_columns(self) -> List[str]:
        return [f.column_name for f in self.models.workflow_status._meta.sorted_fields]

    def _where(self, query: ListQuery, *extra: str) -> Tuple[str, Dict[str, Any]]:
        """`` WHERE ...`` for the filters ``query`` sets, and their values by name."""
        clauses: List[str] = []
        params: Dict[str, Any] = {}
        for name, clause in IN_CLAUSES.items():
            if getattr(query, name) is not None:
                clauses.append(clause)
                params[name] = getattr(query, name)
        for name, stamp in query.times.items():
            clauses.append(TIME_CLAUSES[name])
            params[name] = stamp
        clauses += self._flag_clauses(query, params)
        clauses += extra
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def _flag_clauses(self, query: ListQuery, params: Dict[str, Any]) -> List[str]:
        clauses: List[str] = []
        if query.workflow_id_prefix is not None:
            prefixes = [(like_prefix(p),) for p in query.workflow_id_prefix]
            clauses.append(PREFIX if prefixes else NOTHING)
            params["workflow_id_prefix"] = prefixes
        if query.queues_only:
            clauses += [QUEUED] if query.status is not None else [QUEUED, ACTIVE]
        if query.was_forked_from is not None:
            clauses.append(FORKED)
            params["was_forked_from"] = query.was_forked_from
        if query.has_parent is not None:
            clauses.append(HAS_PARENT[query.has_parent])
        if query.attributes is not None:
            clauses.append(self._attributes_match())
            params["attributes"] = query.attributes
        if query.after is not None:
            clauses.append(AFTER[query.sort_desc])
            params["after_at"], params["after_id"] = query.after
        if query.application_names is not None:
            clauses.append(OWNED)
            params["application_names"] = query.application_names
        return clauses

    def _attributes_match(self) -> str:
        if "attributes_match" not in self.backend.statement_tokens:
            raise DBOSException("Filtering workflows by attributes needs PostgreSQL; "
                                "SQLite cannot match JSON containment")
        return "{attributes_match}"

    def descendants(self, workflow_ids: Sequence[str]) -> List[str]:
        """``workflow_ids`` and every workflow started under them, at any depth."""
        found: Dict[str, None] = dict.fromkeys(workflow_ids)
        frontier = list(workflow_ids)
        while frontier:
            children = [r[0] for r in self.rows(DESCENDANTS, parent_ids=frontier) if r[0] not in found]
            found.update(dict.fromkeys(children))
            frontier = children
        return list(found)

    # ------------------------------------------------------------------
    # What garbage collection and global timeouts select
    # ------------------------------------------------------------------

    def collectable_workflows(self, cutoff_ms: int, application_names: Optional[List[str]],
                              batch_size: int) -> List[str]:
        """Up to ``batch_size`` finished workflows created before ``cutoff_ms``, oldest first."""
        where, params = self._where(ListQuery(application_names=application_names),
                                    "created_at < :cutoff", FINISHED)
        text = f"SELECT workflow_uuid FROM {{workflow_status}}{where} ORDER BY created_at LIMIT :batch"
        return [r[0] for r in self.rows(shaped(text), cutoff=cutoff_ms, batch=batch_size, **params)]

    def nth_newest_created_at(self, n: int, application_names: Optional[List[str]]) -> Optional[int]:
        """``created_at`` of the ``n``-th newest workflow; None if there are fewer."""
        where, params = self._where(ListQuery(application_names=application_names))
        text = f"SELECT created_at FROM {{workflow_status}}{where} ORDER BY created_at DESC LIMIT 1 OFFSET :skip"
        row = self.one(shaped(text), skip=max(int(n) - 1, 0), **params)
        return int(row[0]) if row else None

    def active_created_before(self, cutoff_ms: int, application_names: Optional[List[str]]) -> List[str]:
        """Active workflows created at or before ``cutoff_ms``."""
        where, params = self._where(ListQuery(application_names=application_names),
                                    "created_at <= :cutoff", ACTIVE)
        text = f"SELECT workflow_uuid FROM {{workflow_status}}{where}"
        return [r[0] for r in self.rows(shaped(text), cutoff=cutoff_ms, **params)]
