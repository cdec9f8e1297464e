"""Workflow rows and step checkpoints: the engine's hot path.

The three statements every workflow runs (start, checkpoint a step, record
the outcome) are SQL text prepared once per database and sent as single
autocommit statements: one round trip and one commit each. The cancellation
check rides on the checkpoint: its RETURNING clause reads the workflow's status.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from ..error import (
    DBOSQueueDeduplicatedError,
    DBOSSystemDatabaseError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowConflictIDError,
)
from .compound import STEP_COLUMNS
from .prepared import preparable
from .records import Outcome, StartResult, StepRecord, StepWrite

if TYPE_CHECKING:
    from .storage import SystemDatabase

_RECOVERY_FIELDS = (
    "name, class_name, config_name, inputs, recovery_attempts, workflow_deadline_epoch_ms, "
    "authenticated_user, authenticated_roles, assumed_role"
)


def now_ms() -> int:
    return int(time.time() * 1000)


# How ``SystemDatabase.statement`` reads each statement's cursor.

def fetch_one(cursor: Any) -> Any:
    return cursor.fetchone()


def fetch_all(cursor: Any) -> List[Any]:
    rows: List[Any] = cursor.fetchall()
    return rows


def row_count(cursor: Any) -> int:
    return int(cursor.rowcount)


class WorkflowStore:
    def __init__(self, sysdb: "SystemDatabase") -> None:
        self._sysdb = sysdb
        p = sysdb.backend.placeholder
        self._p = p
        self._status = sysdb.backend.qualified("workflow_status")
        self._steps = sysdb.backend.qualified("operation_outputs")
        self._insert_sql: Dict[Tuple[str, ...], str] = {}
        # Prepared on PostgreSQL: parsing and planning them anew cost the
        # server more than the rest of each statement. Every parameter is a
        # column's value or compared with one, so it is typed as before.
        self._checkpoint_sql = preparable(
            f"INSERT INTO {self._steps} ({STEP_COLUMNS}) VALUES ({', '.join([p] * 8)}) "
            "ON CONFLICT (workflow_uuid, function_id) DO NOTHING "
            f"RETURNING (SELECT status FROM {self._status} WHERE workflow_uuid = {p})"
        )
        self._finish_sql = preparable(
            f"UPDATE {self._status} SET status = {p}, output = {p}, error = {p}, "
            f"completed_at = {p}, updated_at = {p}, deduplication_id = NULL "
            f"WHERE workflow_uuid = {p} AND status = 'PENDING'"
        )

    # ------------------------------------------------------------------
    # Starting
    # ------------------------------------------------------------------

    def _start_sql(self, columns: Tuple[str, ...]) -> str:
        sql = self._insert_sql.get(columns)
        if sql is None:
            sql = preparable(
                f"INSERT INTO {self._status} ({', '.join(columns)}) "
                f"VALUES ({', '.join([self._p] * len(columns))}) "
                "ON CONFLICT (workflow_uuid) DO UPDATE SET updated_at = EXCLUDED.updated_at "
                "RETURNING status, name, class_name, config_name, owner_xid, queue_name, "
                "workflow_deadline_epoch_ms"
            )
            self._insert_sql[columns] = sql
        return sql

    def start(self, row: Dict[str, Any], link: Optional[StepWrite] = None) -> StartResult:
        """Insert the workflow's row, or find the one already there.

        ``link`` checkpoints the start in the parent workflow, in the same
        transaction, so a child is never started without its parent knowing,
        nor by a parent that was cancelled (``DBOSWorkflowCancelledError``).
        """
        sql, params = self._start_sql(tuple(row)), list(row.values())

        def work() -> Any:
            found = self._sysdb.execute(sql, params).fetchone()
            if link is not None:
                self._link_child(link)
            return found

        try:
            if link is None:
                found = self._sysdb.statement(sql, params, fetch_one)
            else:
                found = self._sysdb.run(work)
        except DBOSSystemDatabaseError as exc:
            self._raise_if_deduplicated(exc, row)
            raise
        status, name, class_name, config_name, owner, queue, deadline = found
        return StartResult(
            created=owner == row.get("owner_xid"),
            status=status,
            name=name,
            class_name=class_name,
            config_name=config_name,
            queue_name=queue,
            deadline_epoch_ms=deadline,
        )

    @staticmethod
    def _raise_if_deduplicated(exc: Exception, row: Dict[str, Any]) -> None:
        # The unique index uq_workflow_status_dedup_id on (queue_name,
        # deduplication_id): both drivers name it or its columns.
        dedup = row.get("deduplication_id")
        if dedup is not None and "dedup" in str(exc).lower():
            queue = row.get("queue_name") or ""
            raise DBOSQueueDeduplicatedError(row["workflow_uuid"], queue, dedup) from exc

    def _link_child(self, link: StepWrite) -> None:
        """Record the child in its parent; a cancelled parent rolls the start back."""
        linked = self.insert_step(link)
        if linked is not None:
            if linked[0] == "CANCELLED":
                raise DBOSWorkflowCancelledError(f"Workflow {link.workflow_id} was cancelled")
            return
        existing = self._sysdb.execute(
            f"SELECT child_workflow_id FROM {self._steps} "
            f"WHERE workflow_uuid = {self._p} AND function_id = {self._p}",
            [link.workflow_id, link.function_id],
        ).fetchone()
        if existing is None or existing[0] != link.child_workflow_id:
            raise DBOSWorkflowConflictIDError(link.workflow_id)

    # ------------------------------------------------------------------
    # Steps
    # ------------------------------------------------------------------

    def insert_step(self, step: StepWrite) -> Optional[Tuple[Any, ...]]:
        """Checkpoint ``step`` on the connection ``run`` holds."""
        row: Optional[Tuple[Any, ...]] = self._sysdb.execute(
            self._checkpoint_sql, self._checkpoint_params(step)
        ).fetchone()
        return row

    @staticmethod
    def _checkpoint_params(step: StepWrite) -> List[Any]:
        return [
            step.workflow_id, step.function_id, step.function_name, step.output,
            step.error, step.child_workflow_id, step.started_at_ms,
            step.completed_at_ms or now_ms(), step.workflow_id,
        ]

    def checkpoint(self, step: StepWrite) -> str:
        """Record a step; return the workflow's status as of that write.

        Raises ``DBOSWorkflowConflictIDError`` when another execution of the
        same workflow recorded this step first.
        """
        row = self._sysdb.statement(self._checkpoint_sql, self._checkpoint_params(step), fetch_one)
        if row is None:
            raise DBOSWorkflowConflictIDError(step.workflow_id)
        return str(row[0])

    def load_steps(self, workflow_id: str) -> Dict[int, StepRecord]:
        """Every step an earlier execution recorded, read once at recovery."""
        sql = (
            "SELECT function_id, function_name, output, error, child_workflow_id "
            f"FROM {self._steps} WHERE workflow_uuid = {self._p}"
        )
        rows = self._sysdb.statement(sql, [workflow_id], fetch_all)
        return {int(r[0]): StepRecord(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows}

    # ------------------------------------------------------------------
    # Outcomes
    # ------------------------------------------------------------------

    def finish(self, workflow_id: str, status: str, output: Optional[str], error: Optional[str]) -> bool:
        """Record the outcome if the workflow is still PENDING; False if it was not."""
        stamp = now_ms()
        params = [status, output, error, stamp, stamp, workflow_id]
        return self._sysdb.statement(self._finish_sql, params, row_count) == 1

    def outcome(self, workflow_id: str) -> Optional[Outcome]:
        sql = f"SELECT status, output, error FROM {self._status} WHERE workflow_uuid = {self._p}"
        row = self._sysdb.statement(sql, [workflow_id], fetch_one)
        return Outcome(row[0], row[1], row[2]) if row else None

    def statuses(self, workflow_ids: Sequence[str]) -> Dict[str, str]:
        marks = ", ".join([self._p] * len(workflow_ids))
        sql = f"SELECT workflow_uuid, status FROM {self._status} WHERE workflow_uuid IN ({marks})"
        rows = self._sysdb.run(
            lambda: self._sysdb.execute(sql, list(workflow_ids)).fetchall(), transaction=False
        )
        return {r[0]: r[1] for r in rows}

    def get(self, workflow_id: str) -> Optional[Dict[str, Any]]:
        """The whole row, for status queries."""
        model = self._sysdb.models.workflow_status
        query = model.select().where(model.workflow_uuid == workflow_id).dicts()
        rows: List[Dict[str, Any]] = self._sysdb.run(lambda: list(query.execute()), transaction=False)
        return rows[0] if rows else None

    def cancel(self, workflow_ids: Sequence[str]) -> List[str]:
        """Cancel every listed workflow that has not finished; return those cancelled.

        Other processes running one of them are told through the notification
        channel, after the commit.
        """
        if not workflow_ids:
            return []
        stamp, p = now_ms(), self._p
        marks = ", ".join([p] * len(workflow_ids))
        sql = (
            f"UPDATE {self._status} SET status = 'CANCELLED', queue_name = NULL, "
            f"deduplication_id = NULL, started_at_epoch_ms = NULL, completed_at = {p}, "
            f"updated_at = {p} WHERE workflow_uuid IN ({marks}) "
            "AND status NOT IN ('SUCCESS', 'ERROR') RETURNING workflow_uuid"
        )

        def work() -> List[str]:
            rows = self._sysdb.execute(sql, [stamp, stamp, *workflow_ids]).fetchall()
            cancelled = [r[0] for r in rows]
            self._sysdb.messages.notify([f"cancel::{w}" for w in cancelled] + cancelled)
            return cancelled

        return self._sysdb.run(work)

    # ------------------------------------------------------------------
    # Recovery
    # ------------------------------------------------------------------

    def pending(self, executor_id: str, application_version: str) -> List[str]:
        return list(self.pending_queues(executor_id, application_version))

    def pending_queues(self, executor_id: str, application_version: str) -> Dict[str, Optional[str]]:
        """PENDING workflows of an executor and version, oldest first, each with
        its queue (None for one started directly)."""
        sql = (
            f"SELECT workflow_uuid, queue_name FROM {self._status} WHERE status = 'PENDING' "
            f"AND executor_id = {self._p} AND application_version = {self._p} ORDER BY created_at"
        )
        rows = self._sysdb.run(
            lambda: self._sysdb.execute(sql, [executor_id, application_version]).fetchall(),
            transaction=False,
        )
        return {r[0]: r[1] for r in rows}

    def claim_for_recovery(self, workflow_id: str, executor_id: str) -> Optional[Dict[str, Any]]:
        """Count a recovery attempt on a PENDING row and return what running it needs."""
        p = self._p
        sql = (
            f"UPDATE {self._status} SET recovery_attempts = recovery_attempts + 1, "
            f"executor_id = {p}, updated_at = {p} "
            f"WHERE workflow_uuid = {p} AND status = 'PENDING' RETURNING {_RECOVERY_FIELDS}"
        )
        params = [executor_id, now_ms(), workflow_id]
        row = self._sysdb.run(
            lambda: self._sysdb.execute(sql, params).fetchone(), transaction=False
        )
        return dict(zip(_RECOVERY_FIELDS.split(", "), row)) if row else None

    def claim_many_for_recovery(self, workflow_ids: Sequence[str],
                                executor_id: str) -> Dict[str, Dict[str, Any]]:
        """``claim_for_recovery`` for many workflows in one statement, by ID."""
        if not workflow_ids:
            return {}
        p = self._p
        marks = ", ".join([p] * len(workflow_ids))
        sql = (
            f"UPDATE {self._status} SET recovery_attempts = recovery_attempts + 1, "
            f"executor_id = {p}, updated_at = {p} WHERE workflow_uuid IN ({marks}) "
            f"AND status = 'PENDING' RETURNING workflow_uuid, {_RECOVERY_FIELDS}"
        )
        params = [executor_id, now_ms(), *workflow_ids]
        rows = self._sysdb.run(
            lambda: self._sysdb.execute(sql, params).fetchall(), transaction=False
        )
        names = _RECOVERY_FIELDS.split(", ")
        return {r[0]: dict(zip(names, r[1:])) for r in rows}

    def load_steps_many(self, workflow_ids: Sequence[str]) -> Dict[str, Dict[int, StepRecord]]:
        """``load_steps`` for many workflows in one query; each ID gets a dict."""
        found: Dict[str, Dict[int, StepRecord]] = {w: {} for w in workflow_ids}
        if not workflow_ids:
            return found
        marks = ", ".join([self._p] * len(workflow_ids))
        sql = (
            "SELECT workflow_uuid, function_id, function_name, output, error, child_workflow_id "
            f"FROM {self._steps} WHERE workflow_uuid IN ({marks})"
        )
        rows = self._sysdb.run(
            lambda: self._sysdb.execute(sql, list(workflow_ids)).fetchall(), transaction=False
        )
        for r in rows:
            found[r[0]][int(r[1])] = StepRecord(int(r[1]), r[2], r[3], r[4], r[5])
        return found

    def dead_letter(self, workflow_id: str) -> bool:
        """Move a workflow that exhausted its recovery attempts out of PENDING."""
        stamp, p = now_ms(), self._p
        sql = (
            f"UPDATE {self._status} SET status = 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', "
            f"deduplication_id = NULL, queue_name = NULL, started_at_epoch_ms = NULL, "
            f"completed_at = {p}, updated_at = {p} WHERE workflow_uuid = {p} AND status = 'PENDING'"
        )
        cursor = self._sysdb.run(
            lambda: self._sysdb.execute(sql, [stamp, stamp, workflow_id]), transaction=False
        )
        return bool(cursor.rowcount == 1)
