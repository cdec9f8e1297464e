"""Workflow rows: ``workflow_status``, one row per workflow, from start to outcome.

A start is one upsert: it inserts the row or finds the one already there,
and only the caller whose ``owner_xid`` comes back runs the body. The outcome
is written only while the row is still PENDING, so an execution that lost
its row (cancelled, taken over) never overwrites what another recorded.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .._clock import now_ms, unique_now_ms
from ..error import (
    DBOSNonExistentWorkflowError,
    DBOSQueueDeduplicatedError,
    DBOSSystemDatabaseError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowConflictIDError,
)
from .errors import UNIQUE, constraint_name, violation
from .notifications import cancel_key
from .records import Outcome, StartResult, StepWrite
from .statements import Statement
from .steps import RECORD_STEP, StepRows, step_params

DEDUP_INDEX = "uq_workflow_status_dedup_id"

_START = """
    INSERT INTO {{workflow_status}} ({columns}) VALUES ({values})
    ON CONFLICT (workflow_uuid) DO UPDATE SET updated_at = EXCLUDED.updated_at
    RETURNING status, name, class_name, config_name, owner_xid, queue_name, workflow_deadline_epoch_ms
"""


@lru_cache(maxsize=64)
def start_statement(columns: Tuple[str, ...]) -> Statement:
    """The start of a workflow whose row holds ``columns`` (each bound by its name)."""
    return Statement(start_sql(columns), prepare=True)


def start_sql(columns: Tuple[str, ...]) -> str:
    """The SQL of ``start_statement``, for a backend that wraps it."""
    values = ", ".join(f":{column}" for column in columns)
    return _START.format(columns=", ".join(columns), values=values)


RECORD_OUTCOME = Statement("""
    UPDATE {workflow_status} SET status = :status, output = :output, error = :error,
        completed_at = :now, updated_at = :now, deduplication_id = NULL
    WHERE workflow_uuid = :workflow_id AND status = 'PENDING'
""", prepare=True)

OUTCOME = Statement("""
    SELECT status, output, error, serialization FROM {workflow_status} WHERE workflow_uuid = :workflow_id
""")

STATUSES = Statement("""
    SELECT workflow_uuid, status FROM {workflow_status} WHERE workflow_uuid IN (:workflow_ids)
""")

WORKFLOW_ROW = Statement("SELECT * FROM {workflow_status} WHERE workflow_uuid = :workflow_id")

EXISTING = Statement("""
    SELECT workflow_uuid FROM {workflow_status} WHERE workflow_uuid IN (:workflow_ids)
""")

CANCEL = Statement("""
    UPDATE {workflow_status} SET status = 'CANCELLED', queue_name = NULL, deduplication_id = NULL,
        started_at_epoch_ms = NULL, completed_at = :now, updated_at = :now
    WHERE workflow_uuid IN (:workflow_ids) AND status NOT IN ('SUCCESS', 'ERROR')
    RETURNING workflow_uuid
""")

RESUME = Statement("""
    UPDATE {workflow_status} SET status = 'ENQUEUED', queue_name = :queue_name,
        recovery_attempts = 0, workflow_deadline_epoch_ms = NULL, deduplication_id = NULL,
        started_at_epoch_ms = NULL, completed_at = NULL, delay_until_epoch_ms = NULL,
        queue_partition_key = NULL, updated_at = :now
    WHERE workflow_uuid IN (:workflow_ids) AND status NOT IN ('SUCCESS', 'ERROR')
    RETURNING workflow_uuid
""")

DELETE = Statement("DELETE FROM {workflow_status} WHERE workflow_uuid IN (:workflow_ids)")

SET_ATTRIBUTES = Statement("""
    UPDATE {workflow_status} SET attributes = :attributes, updated_at = :now WHERE workflow_uuid = :workflow_id
""")

PENDING = Statement("""
    SELECT workflow_uuid, queue_name, recovery_attempts FROM {workflow_status} WHERE status = 'PENDING'
        AND executor_id = :executor_id AND application_version = :app_version
    ORDER BY created_at
""")

# What running a claimed workflow needs; claims return these columns.
RECOVERY_FIELDS = (
    "name", "class_name", "config_name", "inputs", "recovery_attempts", "workflow_deadline_epoch_ms",
    "authenticated_user", "authenticated_roles", "assumed_role", "serialization",
    "attributes",  # a stored trace carrier: the run's span continues its starter's trace
)

CLAIM_FOR_RECOVERY = Statement(f"""
    UPDATE {{workflow_status}} SET recovery_attempts = recovery_attempts + 1,
        executor_id = :executor_id, updated_at = :now
    WHERE workflow_uuid = :workflow_id AND status = 'PENDING'
    RETURNING {", ".join(RECOVERY_FIELDS)}
""")

# A claim by recovery names each workflow with the recovery attempts it had
# when it was found PENDING: every claim (this one, a queue's) counts one, so
# a workflow claimed by anyone since (a stale list, DBOS Transact #742) is not
# claimed again. Rows this claim already took carry its stamp, so a retry
# after a lost COMMIT still finds them, without counting twice. Every other
# write that gives a row to an executor stamps it with unique_now_ms too, so
# no earlier hand-over in the same millisecond passes for this claim's own.
_CLAIMED_HERE = "executor_id = :executor_id AND updated_at = :now"
CLAIM_MANY_FOR_RECOVERY = Statement(f"""
    UPDATE {{workflow_status}} SET executor_id = :executor_id, updated_at = :now,
        recovery_attempts = CASE WHEN {_CLAIMED_HERE} THEN recovery_attempts ELSE recovery_attempts + 1 END
    WHERE status = 'PENDING' AND workflow_uuid IN (:workflow_ids)
        AND ((workflow_uuid, recovery_attempts) IN (VALUES :seen) OR ({_CLAIMED_HERE}))
    RETURNING workflow_uuid, {", ".join(RECOVERY_FIELDS)}
""")

_DEAD_LETTER = """
    UPDATE {workflow_status} SET status = 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', deduplication_id = NULL,
        queue_name = NULL, started_at_epoch_ms = NULL, completed_at = :now, updated_at = :now
    WHERE status = 'PENDING' AND workflow_uuid"""
DEAD_LETTER = Statement(f"{_DEAD_LETTER} = :workflow_id")
# Recovery finds a batch's workflows out of attempts together: one statement for all.
DEAD_LETTER_MANY = Statement(f"{_DEAD_LETTER} IN (:workflow_ids)")


class WorkflowRows(StepRows):
    def _start(self, row: Dict[str, Any]) -> Tuple[Statement, Dict[str, Any]]:
        """The statement that starts ``row``, and its parameters. Here an
        enqueue's row is found by other processes' workers at their next poll;
        PostgreSQL's wakes them as it commits (``postgres.py``)."""
        return start_statement(tuple(row)), row

    # ------------------------------------------------------------------
    # Starting and finishing
    # ------------------------------------------------------------------

    def start_workflow(self, row: Dict[str, Any], link: Optional[StepWrite] = None) -> StartResult:
        """Insert the workflow's row, or find the one already there.

        ``link`` checkpoints the start in the parent workflow, in the same
        transaction, so a child is never started without its parent knowing,
        nor by a parent that was cancelled (``DBOSWorkflowCancelledError``).
        """
        statement, params = self._start(row)
        try:
            if link is None:
                found = self.grouped_one(statement, **params)
            else:
                found = self._start_linked(statement, params, link)
        except DBOSSystemDatabaseError as exc:
            self._raise_if_deduplicated(exc, row)
            raise
        assert found is not None, "an upsert with RETURNING returns its row"
        status, name, class_name, config_name, owner, queue, deadline = found[:7]
        return StartResult(owner == row.get("owner_xid"), status, name, class_name, config_name,
                           queue, deadline)

    def _start_linked(self, statement: Statement, row: Dict[str, Any], link: StepWrite) -> Any:
        for attempt in self.attempts():
            with attempt:
                found = self.one(statement, **row)
                self._link_child(link)
        return found

    @staticmethod
    def _raise_if_deduplicated(exc: Exception, row: Dict[str, Any]) -> None:
        dedup = row.get("deduplication_id")
        if dedup is None or violation(exc) != UNIQUE or constraint_name(exc) not in (None, DEDUP_INDEX):
            return
        raise DBOSQueueDeduplicatedError(row["workflow_uuid"], row.get("queue_name") or "", dedup) from exc

    def _link_child(self, link: StepWrite) -> None:
        """Record the child in its parent; a cancelled parent rolls the start back."""
        linked = self.one(RECORD_STEP, **step_params(link))
        if linked is not None:
            if linked[0] == "CANCELLED":
                raise DBOSWorkflowCancelledError(f"Workflow {link.workflow_id} was cancelled")
            return
        if self.recorded_child(link.workflow_id, link.function_id) != link.child_workflow_id:
            raise DBOSWorkflowConflictIDError(link.workflow_id)

    def record_outcome(self, workflow_id: str, status: str, output: Optional[str],
                       error: Optional[str]) -> bool:
        """Record the outcome if the workflow is still PENDING; False if it was not."""
        changed = self.grouped_rowcount(RECORD_OUTCOME, status=status, output=output, error=error,
                                now=now_ms(), workflow_id=workflow_id)
        return changed == 1

    # ------------------------------------------------------------------
    # Reading
    # ------------------------------------------------------------------

    def workflow_outcome(self, workflow_id: str) -> Optional[Outcome]:
        """Status, output, error and stored format of a workflow; None if there is no such workflow."""
        row = self.one(OUTCOME, workflow_id=workflow_id)
        return Outcome(row[0], row[1], row[2], row[3]) if row else None

    def workflow_statuses(self, workflow_ids: Sequence[str]) -> Dict[str, str]:
        """The status of each listed workflow that exists."""
        return {r[0]: r[1] for r in self.rows(STATUSES, workflow_ids=workflow_ids)}

    def workflow_row(self, workflow_id: str) -> Optional[Dict[str, Any]]:
        """The whole ``workflow_status`` row, for status queries."""
        rows = self.records(WORKFLOW_ROW, workflow_id=workflow_id)
        return rows[0] if rows else None

    def existing_workflows(self, workflow_ids: Sequence[str]) -> List[str]:
        """Those of the IDs that name a workflow."""
        return [r[0] for r in self.rows(EXISTING, workflow_ids=workflow_ids)] if workflow_ids else []

    # ------------------------------------------------------------------
    # Cancelling, resuming, deleting
    # ------------------------------------------------------------------

    def cancel_workflows(self, workflow_ids: Sequence[str]) -> List[str]:
        """Cancel every listed workflow that has not finished; return those cancelled.

        Other processes running one of them are told through the notification
        channel, after the commit.
        """
        if not workflow_ids:
            return []
        for attempt in self.attempts():
            with attempt:
                cancelled = [r[0] for r in self.rows(CANCEL, now=now_ms(), workflow_ids=workflow_ids)]
                self.notify([cancel_key(w) for w in cancelled] + cancelled)
        return cancelled

    def resume_workflows(self, workflow_ids: Sequence[str], queue_name: str) -> List[str]:
        """Put unfinished workflows back on ``queue_name``, attempts reset.

        Every ID must exist, or nothing changes. Returns the IDs re-enqueued.
        """
        if not workflow_ids:
            return []
        for attempt in self.attempts():
            with attempt:
                self._require(workflow_ids)
                rows = self.rows(RESUME, queue_name=queue_name, now=now_ms(), workflow_ids=workflow_ids)
        return [r[0] for r in rows]

    def _require(self, workflow_ids: Sequence[str]) -> None:
        present = set(self.existing_workflows(workflow_ids))
        missing = [w for w in workflow_ids if w not in present]
        if missing:
            raise DBOSNonExistentWorkflowError("workflow", ", ".join(missing))

    def set_attributes(self, workflow_id: str, attributes: Optional[str]) -> bool:
        """Replace a workflow's attributes (JSON text; None clears them); False if there is no such workflow."""
        return self.grouped_rowcount(SET_ATTRIBUTES, attributes=attributes, now=now_ms(), workflow_id=workflow_id) == 1

    def delete_workflows(self, workflow_ids: Sequence[str]) -> int:
        """Delete workflows; their steps, events, messages and streams go with them."""
        if not workflow_ids:
            return 0
        return self.rowcount(DELETE, workflow_ids=workflow_ids)

    # ------------------------------------------------------------------
    # Recovery
    # ------------------------------------------------------------------

    def pending_workflows(self, executor_id: str, application_version: str) -> List[str]:
        """PENDING workflows of an executor and version, oldest first."""
        return list(self.pending_workflow_queues(executor_id, application_version))

    def pending_workflow_queues(self, executor_id: str,
                                application_version: str) -> Dict[str, Optional[str]]:
        """``pending_workflows``, each with its queue (None for one started directly)."""
        rows = self.rows(PENDING, executor_id=executor_id, app_version=application_version)
        return {r[0]: r[1] for r in rows}

    def pending_attempts(self, executor_id: str, application_version: str) -> Dict[str, int]:
        """``pending_workflows``, each with its recovery attempts so far (what a claim names)."""
        rows = self.rows(PENDING, executor_id=executor_id, app_version=application_version)
        return {r[0]: int(r[2]) for r in rows}

    def claim_for_recovery(self, workflow_id: str, executor_id: str) -> Optional[Dict[str, Any]]:
        """Count a recovery attempt on a PENDING row and return what running it needs."""
        row = self.one(CLAIM_FOR_RECOVERY, executor_id=executor_id, now=unique_now_ms(),
                       workflow_id=workflow_id)
        return dict(zip(RECOVERY_FIELDS, row)) if row else None

    def claim_many_for_recovery(self, seen: Mapping[str, int],
                                executor_id: str) -> Dict[str, Dict[str, Any]]:
        """``claim_for_recovery`` for many workflows in one statement: each
        only if its recovery attempts are still those ``seen`` (by ID)."""
        if not seen:
            return {}
        stamp = unique_now_ms()  # the same in every try, so a retry finds what a lost COMMIT took
        rows = self.rows(CLAIM_MANY_FOR_RECOVERY, executor_id=executor_id, now=stamp,
                         workflow_ids=list(seen), seen=[(w, int(n)) for w, n in seen.items()])
        return {r[0]: dict(zip(RECOVERY_FIELDS, r[1:])) for r in rows}

    def dead_letter_many(self, workflow_ids: Sequence[str]) -> int:
        """``dead_letter`` for many workflows in one statement; how many it moved."""
        if not workflow_ids:
            return 0
        return self.rowcount(DEAD_LETTER_MANY, now=now_ms(), workflow_ids=list(workflow_ids))

    def dead_letter(self, workflow_id: str) -> bool:
        """Move a workflow that exhausted its recovery attempts out of PENDING."""
        return self.grouped_rowcount(DEAD_LETTER, now=now_ms(), workflow_id=workflow_id) == 1
