"""Application ownership: moving the rows one application owns to a new name.

Rows of ``queues``, ``workflow_schedules``, ``application_versions``,
``workflow_status`` and ``operation_outputs`` carry the name of the
application that owns them (NULL: unclaimed). What decides which
application's processes work on a row (its queues, its schedules, its
versions, its active workflows) moves in one transaction,
so no process ever sees half an application. Finished workflows and their
steps only scope listings and garbage collection, so they may follow in
batches, each a range of workflow IDs, without holding one long transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

from .._status import ACTIVE_STATUSES
from .connection import Connection
from .records import ApplicationRowCounts
from .statements import Statement

# The rows a rename takes: the old name's and, when adopting, the unclaimed.
# ``:adopt`` is 1 or 0 (an integer binds alike on both backends).
SOURCE = "(application_name = :old_name OR (:adopt = 1 AND application_name IS NULL))"
_ACTIVE_LIST = ", ".join(f"'{status}'" for status in sorted(ACTIVE_STATUSES))

MOVE_QUEUES = Statement(f"UPDATE {{queues}} SET application_name = :new_name WHERE {SOURCE}")

MOVE_VERSIONS = Statement(f"UPDATE {{application_versions}} SET application_name = :new_name WHERE {SOURCE}")

# A schedule decides which application's scheduler fires it: it moves with
# the queues and versions, in their transaction.
MOVE_SCHEDULES = Statement(f"UPDATE {{workflow_schedules}} SET application_name = :new_name WHERE {SOURCE}")

MOVE_ACTIVE_WORKFLOWS = Statement(f"""
    UPDATE {{workflow_status}} SET application_name = :new_name
    WHERE {SOURCE} AND status IN ({_ACTIVE_LIST})
""")


@dataclass(frozen=True)
class Batched:
    """The statements that move one table's remaining rows a range of workflow IDs at a time."""

    # The last workflow ID of the next batch: the ``skip``-th distinct one
    # after ``after``, so that one workflow's rows never straddle two batches.
    bound: Statement
    in_range: Statement
    # The last batch is unbounded below too: rows of workflows created
    # meanwhile with an ID below the ranges already moved go with it.
    rest: Statement


def _batched(table: str) -> Batched:
    move = f"UPDATE {{{table}}} SET application_name = :new_name WHERE {SOURCE}"
    return Batched(
        bound=Statement(f"""
            SELECT DISTINCT workflow_uuid FROM {{{table}}} WHERE {SOURCE} AND workflow_uuid > :after
            ORDER BY workflow_uuid LIMIT 1 OFFSET :skip
        """),
        in_range=Statement(f"{move} AND workflow_uuid > :after AND workflow_uuid <= :upper"),
        rest=Statement(move),
    )


WORKFLOW_BATCHES = _batched("workflow_status")
STEP_BATCHES = _batched("operation_outputs")


class OwnershipRows(Connection):
    def rename_application(self, old_name: Optional[str], new_name: str, adopt_unclaimed: bool,
                           batch_size: Optional[int]) -> ApplicationRowCounts:
        """Give ``new_name`` the rows of ``old_name`` (and the unclaimed ones if
        ``adopt_unclaimed``); ``batch_size`` None moves everything in one transaction."""
        names: Dict[str, Any] = {"old_name": old_name, "new_name": new_name, "adopt": int(adopt_unclaimed)}
        for attempt in self.attempts():
            with attempt:
                counts = self._move_together(names, everything=batch_size is None)
        if batch_size is not None:
            counts["workflows"] += self._move_in_batches(WORKFLOW_BATCHES, names, batch_size)
            counts["steps"] = self._move_in_batches(STEP_BATCHES, names, batch_size)
        return counts

    def _move_together(self, names: Dict[str, Any], everything: bool) -> ApplicationRowCounts:
        counts = ApplicationRowCounts(
            queues=self.rowcount(MOVE_QUEUES, **names), schedules=self.rowcount(MOVE_SCHEDULES, **names),
            versions=self.rowcount(MOVE_VERSIONS, **names),
            workflows=self.rowcount(MOVE_ACTIVE_WORKFLOWS, **names), steps=0)
        if everything:
            counts["workflows"] += self.rowcount(WORKFLOW_BATCHES.rest, **names)
            counts["steps"] = self.rowcount(STEP_BATCHES.rest, **names)
        return counts

    def _move_in_batches(self, table: Batched, names: Dict[str, Any], size: int) -> int:
        moved, after = 0, ""  # every workflow ID sorts after the empty string
        while True:
            for attempt in self.attempts():
                with attempt:
                    upper = self.one(table.bound, **names, after=after, skip=size - 1)
                    if upper is None:
                        count = self.rowcount(table.rest, **names)
                    else:
                        count = self.rowcount(table.in_range, **names, after=after, upper=upper[0])
            moved += count
            if upper is None:
                return moved
            after = upper[0]
