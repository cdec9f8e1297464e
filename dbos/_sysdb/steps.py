"""Step checkpoints: ``operation_outputs``, one row per recorded operation.

A checkpoint is one autocommit INSERT (on SQLite committed together with
those other threads write at the same moment: ``grouping.py``). Its RETURNING clause reads the
workflow's status too, so the cancellation check costs no round trip, and
its ON CONFLICT clause makes a second execution of the same workflow, which
would record the same step again, find out instead (nothing is returned).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from .._clock import now_ms
from ..error import DBOSWorkflowConflictIDError
from .connection import Connection, Row
from .records import StepRecord, StepWrite
from .statements import Statement
from .tries import retried_since, retries

# The columns of a checkpoint, in the order StepWrite holds them.
STEP_COLUMNS = (
    "function_id", "function_name", "output", "error", "child_workflow_id",
    "started_at_epoch_ms", "completed_at_epoch_ms", "serialization",
)

# A checkpoint's INSERT, its columns taking the parameters ``step_params`` binds.
STEP_INSERT = f"INSERT INTO {{operation_outputs}} (workflow_uuid, {', '.join(STEP_COLUMNS)})"
# The parameters ``step_params`` binds, in the order of STEP_INSERT's columns.
STEP_PARAMS = ("workflow_id", "function_id", "function_name", "output", "error",
               "child_workflow_id", "started_at_ms", "completed_at_ms", "serialization")
SAVE_STEP = STEP_INSERT + f"""
    VALUES ({", ".join(f":{p}" for p in STEP_PARAMS)})
    ON CONFLICT (workflow_uuid, function_id) DO NOTHING"""

RECORD_STEP = Statement(SAVE_STEP + """
    RETURNING (SELECT status FROM {workflow_status} WHERE workflow_uuid = :workflow_id)
""", prepare=True)

RECORDED_CHILD = Statement("""
    SELECT child_workflow_id FROM {operation_outputs}
    WHERE workflow_uuid = :workflow_id AND function_id = :function_id
""")

# A checkpoint as recorded, with its workflow's status: a retried INSERT
# whose first COMMIT went through (the connection lost before its answer)
# finds its own row, which counts as success.
RECORDED_STEP = Statement("""
    SELECT o.function_name, o.output, o.error, o.child_workflow_id, w.status, o.serialization
    FROM {operation_outputs} o JOIN {workflow_status} w ON w.workflow_uuid = o.workflow_uuid
    WHERE o.workflow_uuid = :workflow_id AND o.function_id = :function_id
""")

LOAD_STEPS = Statement("""
    SELECT function_id, function_name, output, error, child_workflow_id, serialization
    FROM {operation_outputs} WHERE workflow_uuid = :workflow_id
""")

LOAD_STEPS_MANY = Statement("""
    SELECT workflow_uuid, function_id, function_name, output, error, child_workflow_id, serialization
    FROM {operation_outputs} WHERE workflow_uuid IN (:workflow_ids)
""")

LIST_STEPS = Statement("""
    SELECT function_id, function_name, output, error, child_workflow_id,
        started_at_epoch_ms, completed_at_epoch_ms, serialization
    FROM {operation_outputs} WHERE workflow_uuid = :workflow_id ORDER BY function_id
    LIMIT :limit OFFSET :offset
""")


def step_params(step: StepWrite) -> Dict[str, Any]:
    """``RECORD_STEP``'s parameters (and those of statements that embed it)."""
    return {
        "workflow_id": step.workflow_id, "function_id": step.function_id,
        "function_name": step.function_name, "output": step.output, "error": step.error,
        "child_workflow_id": step.child_workflow_id, "started_at_ms": step.started_at_ms,
        "completed_at_ms": step.completed_at_ms or now_ms(), "serialization": step.serialization,
    }


def _record(row: Row) -> StepRecord:
    return StepRecord(int(row[0]), row[1], row[2], row[3], row[4], row[5])


class StepRows(Connection):
    def record_step(self, step: StepWrite) -> str:
        """Checkpoint ``step``; return the workflow's status as of that write.

        Raises ``DBOSWorkflowConflictIDError`` when another execution of the
        same workflow recorded this step first.
        """
        before = retries()
        row = self.grouped_one(RECORD_STEP, **step_params(step))
        if row is None:
            return self.same_step_status(step, before)
        return str(row[0])

    def same_step_status(self, step: StepWrite, before: int) -> str:
        """The workflow's status if the write of ``step`` was retried (since
        ``retries()`` was ``before``) and finds it recorded exactly as given:
        the first try's COMMIT went through, its answer lost. Otherwise
        ``DBOSWorkflowConflictIDError``: another execution recorded it first."""
        if not retried_since(before):
            raise DBOSWorkflowConflictIDError(step.workflow_id)
        row = self.one(RECORDED_STEP, workflow_id=step.workflow_id, function_id=step.function_id)
        if row is None or tuple(row[:4]) != (step.function_name, step.output, step.error, step.child_workflow_id):
            raise DBOSWorkflowConflictIDError(step.workflow_id)
        return str(row[4])

    def recorded_child(self, workflow_id: str, function_id: int) -> Optional[str]:
        """The child workflow a recorded step started, if the step is recorded."""
        row = self.one(RECORDED_CHILD, workflow_id=workflow_id, function_id=function_id)
        return None if row is None else str(row[0])

    def load_steps(self, workflow_id: str) -> Dict[int, StepRecord]:
        """Every step an earlier execution recorded, read once at recovery."""
        return {int(r[0]): _record(r) for r in self.rows(LOAD_STEPS, workflow_id=workflow_id)}

    def load_steps_many(self, workflow_ids: Sequence[str]) -> Dict[str, Dict[int, StepRecord]]:
        """``load_steps`` for many workflows in one query; each ID gets a dict."""
        found: Dict[str, Dict[int, StepRecord]] = {w: {} for w in workflow_ids}
        if workflow_ids:
            for r in self.rows(LOAD_STEPS_MANY, workflow_ids=workflow_ids):
                found[r[0]][int(r[1])] = _record(r[1:])
        return found

    def list_steps(self, workflow_id: str, limit: Optional[int] = None,
                   offset: Optional[int] = None) -> List[Dict[str, Any]]:
        """Every recorded step of a workflow, in order, as column dicts."""
        rows = self.rows(LIST_STEPS, workflow_id=workflow_id,
                         limit=self.backend.limit_param(limit), offset=offset or 0)
        return [dict(zip(STEP_COLUMNS, row)) for row in rows]
