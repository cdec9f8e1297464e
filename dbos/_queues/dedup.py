"""Deduplication on enqueue: reject a second workflow with a deduplication ID
still held on its queue, or hand back the workflow that holds it.

An ID is held while its workflow is DELAYED, ENQUEUED or PENDING (the system
database clears it when the workflow ends), so the holder looked up after a
collision may already have let go: then the insert is tried again.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, Literal, Optional, Tuple

from .._sysdb.records import StartResult, StepWrite
from .._sysdb.storage import Storage
from ..error import DBOSException, DBOSInvalidArgumentError, DBOSQueueDeduplicatedError, DBOSWorkflowCancelledError

# What an enqueue does when its deduplication ID is held: raise
# ``DBOSQueueDeduplicatedError`` ("reject", the default) or return a handle
# to the holder ("return-existing"; its own arguments are then discarded).
DuplicationPolicy = Literal["reject", "return-existing"]

# A holder that keeps letting go between collision and lookup is unlikely
# more than once; the bound only keeps a pathological race from spinning.
_TRIES = 20


def check_policy(policy: Any, deduplication_id: Optional[str], queued: bool = True) -> None:
    """``DBOSException`` unless ``policy`` is usable with this deduplication ID and queue."""
    if policy is None or policy == "reject":
        return
    if policy != "return-existing":
        raise DBOSInvalidArgumentError("duplication_policy", policy, "expected 'reject' or 'return-existing'")
    if not queued:
        raise DBOSException("duplication_policy 'return-existing' needs a queue: it applies only to "
                            "workflows enqueued on one")
    if deduplication_id is None:
        raise DBOSException("duplication_policy 'return-existing' needs a deduplication_id")


def insert_enqueued(sysdb: Storage, row: Dict[str, Any], link: Optional[StepWrite],
                    policy: Optional[str]) -> Tuple[str, Optional[StartResult]]:
    """Write the enqueued ``row`` (and its parent's checkpoint ``link``); the
    workflow ID enqueued and what the write found. Under "return-existing" a
    collision returns the holder's ID (recorded in the parent instead) and None."""
    for _ in range(_TRIES):
        try:
            return str(row["workflow_uuid"]), sysdb.start_workflow(row, link)
        except DBOSQueueDeduplicatedError:
            if policy != "return-existing":
                raise
            holder = sysdb.deduplicated_workflow(str(row["queue_name"]), str(row["deduplication_id"]))
        if holder is not None:
            if link is not None and sysdb.record_step(replace(link, child_workflow_id=holder)) == "CANCELLED":
                raise DBOSWorkflowCancelledError(f"Workflow {link.workflow_id} was cancelled")
            return holder, None
    raise DBOSQueueDeduplicatedError(str(row["workflow_uuid"]), str(row["queue_name"]),
                                     str(row["deduplication_id"]))
