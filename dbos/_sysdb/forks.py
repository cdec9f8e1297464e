"""Forks: a new workflow that keeps an original's history before a chosen step.

A fork is one transaction: the new ENQUEUED row, copied from the original;
the original marked as forked from; and, from step 2 on, the original's
steps, event history and stream values recorded before the start step, so a
replay of the fork returns them instead of running them again.
"""

from __future__ import annotations

import uuid
from typing import Any, Dict

from .._clock import now_ms
from ..error import DBOSConflictingWorkflowError, DBOSNonExistentWorkflowError
from .records import ForkRequest
from .statements import Statement
from .steps import STEP_COLUMNS
from .workflows import WorkflowRows

# Copied from the original to a fork; the rest of the fork's row is its own.
FORK_COPIED = (
    "name", "class_name", "config_name", "application_id", "authenticated_user",
    "assumed_role", "authenticated_roles", "inputs", "serialization", "attributes",
    "application_name",
)
# The columns of the fork's row, each bound by its name.
FORK_COLUMNS = FORK_COPIED + (
    "workflow_uuid", "status", "queue_name", "queue_partition_key", "forked_from",
    "application_version", "workflow_timeout_ms", "executor_id", "created_at", "updated_at",
    "recovery_attempts", "priority", "owner_xid",
)

FORK_SOURCE = Statement(f"""
    SELECT {", ".join(FORK_COPIED)}, workflow_timeout_ms FROM {{workflow_status}}
    WHERE workflow_uuid = :workflow_id
""")

FORKED_FROM = Statement("SELECT forked_from FROM {workflow_status} WHERE workflow_uuid = :workflow_id")

INSERT_FORK = Statement(f"""
    INSERT INTO {{workflow_status}} ({", ".join(FORK_COLUMNS)})
    VALUES ({", ".join(":" + c for c in FORK_COLUMNS)})
""")

MARK_FORKED = Statement("""
    UPDATE {workflow_status} SET was_forked_from = :forked WHERE workflow_uuid = :workflow_id
""")

COPY_STEPS = Statement(f"""
    INSERT INTO {{operation_outputs}} (workflow_uuid, {", ".join(STEP_COLUMNS)}, application_name)
    SELECT :new_id, {", ".join(STEP_COLUMNS)}, application_name
    FROM {{operation_outputs}} WHERE workflow_uuid = :original_id AND function_id < :start_step
""")

COPY_EVENT_HISTORY = Statement("""
    INSERT INTO {workflow_events_history} (workflow_uuid, function_id, key, value, serialization)
    SELECT :new_id, function_id, key, value, serialization FROM {workflow_events_history}
    WHERE workflow_uuid = :original_id AND function_id < :start_step
""")

COPY_STREAMS = Statement("""
    INSERT INTO {streams} (workflow_uuid, key, value, "offset", function_id, serialization)
    SELECT :new_id, key, value, "offset", function_id, serialization FROM {streams}
    WHERE workflow_uuid = :original_id AND function_id < :start_step
""")

# The fork's latest value of each event is the last one set before its start step.
LATEST_EVENTS = Statement("""
    INSERT INTO {workflow_events} (workflow_uuid, key, value, serialization)
    SELECT h.workflow_uuid, h.key, h.value, h.serialization FROM {workflow_events_history} h
    WHERE h.workflow_uuid = :new_id AND h.function_id = (SELECT MAX(g.function_id)
        FROM {workflow_events_history} g WHERE g.workflow_uuid = h.workflow_uuid AND g.key = h.key)
""")

REPLACE_CHILD = Statement("""
    UPDATE {operation_outputs} SET child_workflow_id = :new_child
    WHERE workflow_uuid = :new_id AND child_workflow_id = :old_child
""")


class ForkRows(WorkflowRows):
    def fork_workflow(self, request: ForkRequest) -> str:
        """Create the fork as ENQUEUED, with the original's history before its start step."""
        for attempt in self.attempts():
            with attempt:
                self._fork(request)
        return request.new_id

    def _fork(self, request: ForkRequest) -> None:
        original = self._fork_source(request.original_id)
        if self._existing_fork(request):
            return
        self.rowcount(INSERT_FORK, **self._fork_row(request, original))
        self.rowcount(MARK_FORKED, forked=True, workflow_id=request.original_id)
        if request.start_step > 1:
            self._copy_history(request)

    def _fork_source(self, workflow_id: str) -> Dict[str, Any]:
        row = self.one(FORK_SOURCE, workflow_id=workflow_id)
        if row is None:
            raise DBOSNonExistentWorkflowError("workflow", workflow_id)
        return dict(zip((*FORK_COPIED, "workflow_timeout_ms"), row))

    def _existing_fork(self, request: ForkRequest) -> bool:
        """A fork already made with this ID (a retried call) is that fork."""
        row = self.one(FORKED_FROM, workflow_id=request.new_id)
        if row is None:
            return False
        if row[0] != request.original_id:
            raise DBOSConflictingWorkflowError(
                request.new_id, f"cannot fork {request.original_id} into {request.new_id}: "
                "a different workflow already has that ID")
        return True

    @staticmethod
    def _fork_row(request: ForkRequest, original: Dict[str, Any]) -> Dict[str, Any]:
        stamp = now_ms()
        timeout = request.timeout_ms if request.timeout_ms is not None else original["workflow_timeout_ms"]
        return {
            **{column: original[column] for column in FORK_COPIED},
            "workflow_uuid": request.new_id, "status": "ENQUEUED", "queue_name": request.queue_name,
            "queue_partition_key": request.queue_partition_key, "forked_from": request.original_id,
            "application_version": request.application_version, "workflow_timeout_ms": timeout,
            "executor_id": request.executor_id, "created_at": stamp, "updated_at": stamp,
            "recovery_attempts": 0, "priority": 0, "owner_xid": uuid.uuid4().hex,
        }

    def _copy_history(self, request: ForkRequest) -> None:
        span = {"new_id": request.new_id, "original_id": request.original_id, "start_step": request.start_step}
        for statement in (COPY_STEPS, COPY_EVENT_HISTORY, COPY_STREAMS):
            self.rowcount(statement, **span)
        self.rowcount(LATEST_EVENTS, new_id=request.new_id)
        for old_child, new_child in request.replacement_children.items():
            self.rowcount(REPLACE_CHILD, new_child=new_child, new_id=request.new_id, old_child=old_child)
