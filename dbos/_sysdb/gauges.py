"""Gauges read at scrape time: how deep each queue is, how long its oldest
job has waited, how many executors hold a heartbeat row.

These are counts over the current rows, not events, so they come from the
database, whoever wrote the rows; a scrape reads them in two queries that
the queue indexes answer (``idx_workflow_status_in_flight`` and the
``ENQUEUED``/``DELAYED`` partial indexes).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from .connection import Connection
from .statements import Statement

# Rows of this application, and unclaimed rows (as listings select them).
_OWNED = "(application_name IS NULL OR application_name = :application_name)"
# The same, or every application's rows when none is named (the dashboard's view).
_OWNED_OR_ALL = "(:application_name IS NULL OR application_name IS NULL OR application_name = :application_name)"

QUEUE_DEPTHS = Statement(f"""
    SELECT queue_name, status, COUNT(*), MIN(created_at), {{db_now_ms}}
    FROM {{workflow_status}}
    WHERE queue_name IS NOT NULL AND status IN ('ENQUEUED', 'PENDING', 'DELAYED') AND {_OWNED_OR_ALL}
    GROUP BY queue_name, status
""")

EXECUTORS_BY_VERSION = Statement(f"""
    SELECT application_version, COUNT(*) FROM {{executors}} WHERE {_OWNED} GROUP BY application_version
""")


class GaugeRows(Connection):
    def queue_depths(self, application_name: Optional[str] = None) -> List[Dict[str, Any]]:
        rows = self.rows(QUEUE_DEPTHS, application_name=application_name)
        return [{"queue": queue, "status": status, "depth": int(count),
                 "oldest_age_ms": max(0, int(now) - int(oldest))}
                for queue, status, count, oldest, now in rows]

    def executor_counts(self, application_name: str) -> Dict[str, int]:
        rows = self.rows(EXECUTORS_BY_VERSION, application_name=application_name)
        return {str(version): int(count) for version, count in rows}
