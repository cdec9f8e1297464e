"""What the dashboard summarises: counts by queue, executor, version and
minute, and a workflow's messages and streams.

Every statement here reads and aggregates; none changes a row. Counts come
from ``workflow_status`` itself, so a dashboard opened on a database with
no process running still shows what is waiting where.
"""

from __future__ import annotations

from typing import Any, Dict, List

from .connection import Connection
from .statements import Statement

# Work still to be done: what a queue's depth counts.
_WAITING = "status IN ('ENQUEUED', 'PENDING', 'DELAYED')"

IN_FLIGHT = Statement("""
    SELECT queue_name, executor_id, COUNT(*) AS workflows
    FROM {workflow_status}
    WHERE queue_name IS NOT NULL AND status = 'PENDING'
    GROUP BY queue_name, executor_id
    ORDER BY queue_name, executor_id
""")

# Integer division of epoch milliseconds: the same minute buckets on both backends.
OUTCOMES_PER_MINUTE = Statement("""
    SELECT completed_at / 60000 AS minute, status, COUNT(*) AS workflows
    FROM {workflow_status}
    WHERE completed_at >= :since_ms AND status IN ('SUCCESS', 'ERROR', 'CANCELLED')
    GROUP BY completed_at / 60000, status
    ORDER BY minute
""")

EXECUTORS = Statement("""
    SELECT e.executor_id, e.application_version, e.application_name, e.hostname, e.pid,
        e.started_at, e.heartbeat_at, {db_now_ms} AS now_ms,
        (SELECT COUNT(*) FROM {workflow_status} w
         WHERE w.executor_id = e.executor_id AND w.application_version = e.application_version
           AND w.status = 'PENDING') AS pending
    FROM {executors} e
    ORDER BY e.heartbeat_at DESC, e.executor_id
""")

PENDING_BY_VERSION = Statement(f"""
    SELECT application_version, status, COUNT(*) AS workflows
    FROM {{workflow_status}}
    WHERE {_WAITING}
    GROUP BY application_version, status
""")

MESSAGES = Statement("""
    SELECT message_uuid, topic, message, serialization, created_at_epoch_ms, consumed
    FROM {notifications} WHERE destination_uuid = :workflow_id
    ORDER BY created_at_epoch_ms, message_uuid LIMIT :limit
""")

STREAMS = Statement("""
    SELECT key, "offset", value, serialization, function_id
    FROM {streams} WHERE workflow_uuid = :workflow_id
    ORDER BY key, "offset" LIMIT :limit
""")


class OverviewRows(Connection):
    def queue_in_flight(self) -> List[Dict[str, Any]]:
        """PENDING queued workflows per queue and executor."""
        return self.records(IN_FLIGHT)

    def outcomes_per_minute(self, since_ms: int) -> List[Dict[str, Any]]:
        """Workflows finished since ``since_ms``, per minute (epoch ms // 60000) and final status."""
        return self.records(OUTCOMES_PER_MINUTE, since_ms=since_ms)

    def list_executors(self) -> List[Dict[str, Any]]:
        """Every executor's heartbeat row, with the database's clock and its PENDING count."""
        return self.records(EXECUTORS)

    def pending_by_version(self) -> List[Dict[str, Any]]:
        """Unfinished workflows per application version and status."""
        return self.records(PENDING_BY_VERSION)

    def workflow_messages(self, workflow_id: str, limit: int) -> List[Dict[str, Any]]:
        """Messages sent to a workflow, read or not, oldest first."""
        return self.records(MESSAGES, workflow_id=workflow_id, limit=limit)

    def workflow_streams(self, workflow_id: str, limit: int) -> List[Dict[str, Any]]:
        """A workflow's stream values by key and offset."""
        return self.records(STREAMS, workflow_id=workflow_id, limit=limit)
