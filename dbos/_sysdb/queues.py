"""Queued workflows: claiming them under flow control, and queue rows.

A claim is one transaction that counts what the queue's limits allow and
moves that many ENQUEUED rows, by priority then age, to PENDING for this
executor. On PostgreSQL rows other claimers hold are skipped, and a queue
with a shared budget (global concurrency or a rate limit) takes a lock for
the transaction so two processes never both spend the same budget. On
SQLite the IMMEDIATE transaction is already the only writer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from .workflows import now_ms

if TYPE_CHECKING:
    from .storage import SystemDatabase

CLAIMED_FIELDS = (
    "workflow_uuid, name, class_name, config_name, inputs, recovery_attempts, "
    "workflow_deadline_epoch_ms, authenticated_user, authenticated_roles, assumed_role, queue_name, "
    "queue_partition_key"
)


@dataclass(frozen=True)
class ClaimLimits:
    max_tasks: int
    global_concurrency: Optional[int] = None
    rate_limit_max: Optional[int] = None
    rate_limit_period_sec: Optional[float] = None
    partition_key: Optional[str] = None

    @property
    def shared(self) -> bool:
        return self.global_concurrency is not None or self.rate_limit_max is not None


class QueueStore:
    def __init__(self, sysdb: "SystemDatabase") -> None:
        self._sysdb = sysdb
        self._backend = sysdb.backend
        self._p = sysdb.backend.placeholder
        self._status = sysdb.backend.qualified("workflow_status")
        # A workflow enqueued for no particular version is for the latest one.
        self._latest_version = (
            f"(SELECT version_name FROM {sysdb.backend.qualified('application_versions')} "
            "ORDER BY version_timestamp DESC LIMIT 1)"
        )
        # Whether an earlier execution (or a fork's copy) recorded steps, so
        # only such workflows read their steps before running.
        self._has_steps = (
            f"EXISTS (SELECT 1 FROM {sysdb.backend.qualified('operation_outputs')} o "
            f"WHERE o.workflow_uuid = {self._status}.workflow_uuid)"
        )

    def _where_queue(self, limits: ClaimLimits) -> str:
        where = f"queue_name = {self._p}"
        if limits.partition_key is not None:
            where += f" AND queue_partition_key = {self._p}"
        return where

    def _queue_params(self, queue_name: str, limits: ClaimLimits) -> List[Any]:
        return [queue_name] + ([limits.partition_key] if limits.partition_key is not None else [])

    def claim(self, queue_name: str, limits: ClaimLimits, executor_id: str,
              app_version: str) -> List[Dict[str, Any]]:
        """Move up to what the limits allow from ENQUEUED to PENDING here."""
        return self._sysdb.run(lambda: self._claim(queue_name, limits, executor_id, app_version))

    def _claim(self, queue_name: str, limits: ClaimLimits, executor_id: str,
               app_version: str) -> List[Dict[str, Any]]:
        if limits.shared and self._backend.queue_lock is not None:
            self._sysdb.execute(self._backend.queue_lock, [f"dbos-queue:{queue_name}"])
        budget = self._budget(queue_name, limits)
        if budget <= 0:
            return []
        ids = self._pick(queue_name, limits, app_version, budget)
        return self._take(ids, executor_id, app_version) if ids else []

    def _budget(self, queue_name: str, limits: ClaimLimits) -> int:
        budget = limits.max_tasks
        where, params = self._where_queue(limits), self._queue_params(queue_name, limits)
        if limits.global_concurrency is not None:
            running = self._count(f"{where} AND status = 'PENDING'", params)
            budget = min(budget, limits.global_concurrency - running)
        if limits.rate_limit_max is not None and limits.rate_limit_period_sec:
            since = now_ms() - int(limits.rate_limit_period_sec * 1000)
            started = self._count(f"{where} AND started_at_epoch_ms > {self._p}", params + [since])
            budget = min(budget, limits.rate_limit_max - started)
        return budget

    def _count(self, where: str, params: Sequence[Any]) -> int:
        row = self._sysdb.execute(f"SELECT COUNT(*) FROM {self._status} WHERE {where}", params).fetchone()
        return int(row[0])

    def _pick(self, queue_name: str, limits: ClaimLimits, app_version: str, budget: int) -> List[str]:
        p = self._p
        sql = (
            f"SELECT workflow_uuid FROM {self._status} WHERE {self._where_queue(limits)} "
            f"AND status = 'ENQUEUED' AND (application_version = {p} OR (application_version IS NULL "
            f"AND {p} = {self._latest_version})) "
            f"ORDER BY priority, created_at LIMIT {int(budget)}{self._backend.skip_locked}"
        )
        params = self._queue_params(queue_name, limits) + [app_version, app_version]
        return [r[0] for r in self._sysdb.execute(sql, params).fetchall()]

    def _take(self, ids: List[str], executor_id: str, app_version: str) -> List[Dict[str, Any]]:
        p, stamp = self._p, now_ms()
        sql = (
            f"UPDATE {self._status} SET status = 'PENDING', executor_id = {p}, "
            f"application_version = {p}, started_at_epoch_ms = {p}, updated_at = {p}, "
            "recovery_attempts = recovery_attempts + 1, workflow_deadline_epoch_ms = "
            f"COALESCE(workflow_deadline_epoch_ms, {p} + workflow_timeout_ms) "
            f"WHERE workflow_uuid IN ({', '.join([p] * len(ids))}) AND status = 'ENQUEUED' "
            f"RETURNING {CLAIMED_FIELDS}, {self._has_steps}"
        )
        rows = self._sysdb.execute(sql, [executor_id, app_version, stamp, stamp, stamp, *ids]).fetchall()
        names = CLAIMED_FIELDS.split(", ") + ["has_steps"]
        return [dict(zip(names, r)) for r in rows]

    def partitions(self, queue_name: str) -> List[str]:
        """Partition keys that have work waiting."""
        sql = (
            f"SELECT DISTINCT queue_partition_key FROM {self._status} WHERE queue_name = {self._p} "
            "AND status = 'ENQUEUED' AND queue_partition_key IS NOT NULL"
        )
        rows = self._sysdb.run(lambda: self._sysdb.execute(sql, [queue_name]).fetchall(), transaction=False)
        return [r[0] for r in rows]

    def promote_delayed(self, queue_name: str) -> int:
        """DELAYED rows whose time has come become ENQUEUED."""
        p, stamp = self._p, now_ms()
        due = f"queue_name = {p} AND status = 'DELAYED' AND delay_until_epoch_ms <= {p}"
        # Every poll asks, and almost every time nothing is due: a read on the
        # partial index of DELAYED rows, which takes no write lock, comes first.
        peek = f"SELECT 1 FROM {self._status} WHERE {due} LIMIT 1"
        if not self._sysdb.run(lambda: self._sysdb.execute(peek, [queue_name, stamp]).fetchone(),
                               transaction=False):
            return 0
        sql = f"UPDATE {self._status} SET status = 'ENQUEUED', updated_at = {p} WHERE {due}"
        cursor = self._sysdb.run(lambda: self._sysdb.execute(sql, [stamp, queue_name, stamp]),
                                 transaction=False)
        return int(cursor.rowcount or 0)

    def requeue_pending(self, executor_id: str, app_version: str) -> int:
        """Workflows this executor was running from queues go back to their queues."""
        p = self._p
        sql = (
            f"UPDATE {self._status} SET status = 'ENQUEUED', started_at_epoch_ms = NULL, "
            f"updated_at = {p} WHERE status = 'PENDING' AND queue_name IS NOT NULL "
            f"AND executor_id = {p} AND application_version = {p}"
        )
        cursor = self._sysdb.run(
            lambda: self._sysdb.execute(sql, [now_ms(), executor_id, app_version]), transaction=False
        )
        return int(cursor.rowcount or 0)

    # ------------------------------------------------------------------
    # Queue rows (DBOS.register_queue)
    # ------------------------------------------------------------------

    def save_queue(self, fields: Dict[str, Any], update: bool) -> None:
        model = self._sysdb.models.queues
        stamp = now_ms()
        row = {**fields, "queue_id": str(uuid.uuid4()), "created_at": stamp, "updated_at": stamp}
        query = model.insert(**row)
        if update:
            changes = {getattr(model, k): v for k, v in fields.items() if k != "name"}
            changes[model.updated_at] = stamp
            query = query.on_conflict(conflict_target=[model.name], update=changes)
        else:
            query = query.on_conflict_ignore()
        self._sysdb.run(lambda: query.execute())

    def get_queue(self, name: str) -> Optional[Dict[str, Any]]:
        model = self._sysdb.models.queues
        query = model.select().where(model.name == name).dicts()
        rows: List[Dict[str, Any]] = self._sysdb.run(lambda: list(query.execute()), transaction=False)
        return rows[0] if rows else None

    def list_queues(self) -> List[Dict[str, Any]]:
        model = self._sysdb.models.queues
        query = model.select().order_by(model.name).dicts()
        rows: List[Dict[str, Any]] = self._sysdb.run(lambda: list(query.execute()), transaction=False)
        return rows

    def delete_queue(self, name: str) -> None:
        model = self._sysdb.models.queues
        self._sysdb.run(lambda: model.delete().where(model.name == name).execute())
