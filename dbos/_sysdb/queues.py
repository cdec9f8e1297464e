"""Queued workflows and queue rows: claiming work under flow control.

A claim is one transaction that counts what the queue's limits allow and
moves that many ENQUEUED rows, by priority then age, to PENDING for this
executor. On SQLite the IMMEDIATE transaction is already the only writer;
``PostgresSystemDatabase`` skips rows other claimers hold and, for a queue
with a shared budget (global concurrency or a rate limit), takes a lock for
the transaction so two processes never both spend the same budget.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .._clock import now_ms
from .._clock import unique_now_ms as claim_stamp
from ..error import DBOSException
from .connection import Connection
from .records import ClaimLimits
from .statements import Statement
from .tries import repeating
from .workflows import RECOVERY_FIELDS

# What running a claimed workflow needs, as recovery claims it, and its place in the queue.
CLAIMED_FIELDS = ("workflow_uuid", *RECOVERY_FIELDS, "queue_name", "queue_partition_key")

# The two versions of each statement that counts or picks in a queue: the
# whole queue, or one partition of it.
_WHOLE = "queue_name = :queue_name"
_PARTITION = "queue_name = :queue_name AND queue_partition_key = :partition_key"

_RUNNING = "SELECT COUNT(*) FROM {{workflow_status}} WHERE {where} AND status = 'PENDING'"
_STARTED_SINCE = "SELECT COUNT(*) FROM {{workflow_status}} WHERE {where} AND started_at_epoch_ms > :since"
# A workflow enqueued for no particular version is for the latest one, and
# one enqueued for no particular application for whichever claims it first.
_PICK = """
    SELECT workflow_uuid FROM {{workflow_status}}
    WHERE {where} AND status = 'ENQUEUED' AND (application_name = :app_name OR application_name IS NULL)
        AND (application_version = :app_version OR (
        application_version IS NULL AND :app_version = (
            SELECT version_name FROM {{application_versions}} ORDER BY version_timestamp DESC LIMIT 1)))
    ORDER BY priority, created_at LIMIT :budget{{skip_locked}}
"""

RUNNING = {False: Statement(_RUNNING.format(where=_WHOLE)), True: Statement(_RUNNING.format(where=_PARTITION))}
STARTED_SINCE = {False: Statement(_STARTED_SINCE.format(where=_WHOLE)),
                 True: Statement(_STARTED_SINCE.format(where=_PARTITION))}
PICK = {False: Statement(_PICK.format(where=_WHOLE)), True: Statement(_PICK.format(where=_PARTITION))}

# has_steps: whether an earlier execution (or a fork's copy) recorded steps,
# so that only such workflows read their steps before running.
_TAKE_SET = """
    UPDATE {workflow_status} SET status = 'PENDING', executor_id = :executor_id,
        application_version = :app_version, application_name = :app_name,
        started_at_epoch_ms = :now, updated_at = :now,
        recovery_attempts = recovery_attempts + 1,
        workflow_deadline_epoch_ms = COALESCE(workflow_deadline_epoch_ms, :now + workflow_timeout_ms)
"""
_TAKE_RETURNING = f"""
    RETURNING {", ".join(CLAIMED_FIELDS)}, EXISTS (SELECT 1 FROM {{operation_outputs}} o
        WHERE o.workflow_uuid = {{workflow_status}}.workflow_uuid)
"""
TAKE = Statement(_TAKE_SET + "WHERE workflow_uuid IN (:workflow_ids) AND status = 'ENQUEUED'" + _TAKE_RETURNING)

# A claim that spends no shared budget picks and takes in one statement,
# committed by itself: one round trip, where a transaction of PICK and TAKE
# costs four. The pick is materialised so that it runs once, whatever plan
# the UPDATE gets.
def _claim_at_once(where: str) -> Statement:
    pick = _PICK.format(where=where)
    return Statement(f"WITH picked AS MATERIALIZED ({pick})" + _TAKE_SET
                     + "WHERE workflow_uuid IN (SELECT workflow_uuid FROM picked) AND status = 'ENQUEUED'"
                     + _TAKE_RETURNING)


CLAIM_AT_ONCE = {False: _claim_at_once(_WHOLE), True: _claim_at_once(_PARTITION)}

# What a claim whose COMMIT went through but whose answer was lost took: its
# rows carry the claim's stamp, so its retry hands them over after all.
RECLAIM = Statement(f"""
    SELECT {", ".join(CLAIMED_FIELDS)}, EXISTS (SELECT 1 FROM {{operation_outputs}} o
        WHERE o.workflow_uuid = {{workflow_status}}.workflow_uuid)
    FROM {{workflow_status}} WHERE queue_name = :queue_name AND status = 'PENDING'
        AND executor_id = :executor_id AND started_at_epoch_ms = :now AND updated_at = :now
""")

PARTITIONS = Statement("""
    SELECT DISTINCT queue_partition_key FROM {workflow_status} WHERE queue_name = :queue_name
        AND status = 'ENQUEUED' AND queue_partition_key IS NOT NULL
""")

_DUE = "queue_name = :queue_name AND status = 'DELAYED' AND delay_until_epoch_ms <= :now"
# Every poll asks, and almost every time nothing is due: a read on the
# partial index of DELAYED rows, which takes no write lock, comes first.
ANY_DUE = Statement(f"SELECT 1 FROM {{workflow_status}} WHERE {_DUE} LIMIT 1")
# A debounced workflow's deduplication ID is its debounce key, held only while
# it is DELAYED: freed here, the next debounce of that key starts a new workflow.
PROMOTE_DUE = Statement(f"""
    UPDATE {{workflow_status}} SET status = 'ENQUEUED', updated_at = :now,
        deduplication_id = CASE WHEN is_debounced THEN NULL ELSE deduplication_id END
    WHERE {_DUE}
""")

REQUEUE_PENDING = Statement("""
    UPDATE {workflow_status} SET status = 'ENQUEUED', started_at_epoch_ms = NULL, updated_at = :now
    WHERE status = 'PENDING' AND queue_name IS NOT NULL
        AND executor_id = :executor_id AND application_version = :app_version
""")

# Queue rows (DBOS.register_queue): the limits, then the owner.
LIMIT_FIELDS = (
    "concurrency", "worker_concurrency", "rate_limit_max", "rate_limit_period_sec",
    "priority_enabled", "partition_queue", "partition_concurrency", "partition_worker_concurrency",
    "partition_rate_limit_max", "partition_rate_limit_period_sec", "polling_interval_sec",
)
QUEUE_FIELDS = ("name", *LIMIT_FIELDS, "application_name")
_DEFAULTS: Dict[str, Any] = {"priority_enabled": False, "partition_queue": False, "polling_interval_sec": 1.0}
_INSERT_QUEUE = f"""
    INSERT INTO {{queues}} (queue_id, created_at, updated_at, {", ".join(QUEUE_FIELDS)})
    VALUES (:queue_id, :now, :now, {", ".join(":" + f for f in QUEUE_FIELDS)})
"""
# An update claims an unclaimed row, and never takes one from its owner.
SAVE_QUEUE = Statement(_INSERT_QUEUE + "ON CONFLICT (name) DO UPDATE SET updated_at = EXCLUDED.updated_at, "
                       + ", ".join(f"{f} = EXCLUDED.{f}" for f in LIMIT_FIELDS)
                       + ", application_name = COALESCE({queues}.application_name, EXCLUDED.application_name)")
ADD_QUEUE = Statement(_INSERT_QUEUE + "ON CONFLICT (name) DO NOTHING")
QUEUE_OWNER = Statement("SELECT application_name FROM {queues} WHERE name = :name")
GET_QUEUE = Statement("SELECT * FROM {queues} WHERE name = :name")
LIST_QUEUES = Statement("SELECT * FROM {queues} ORDER BY name")
# Those of the named applications, and the unclaimed.
LIST_OWNED_QUEUES = Statement("""
    SELECT * FROM {queues} WHERE application_name IN (:owners) OR application_name IS NULL ORDER BY name
""")
DELETE_QUEUE = Statement("DELETE FROM {queues} WHERE name = :name")


def _update_queue(columns: Tuple[str, ...]) -> Statement:
    sets = ", ".join(f"{c} = :{c}" for c in columns)
    return Statement(f"UPDATE {{queues}} SET {sets}, updated_at = :now WHERE name = :name")


# One statement per group of columns a setter writes (``_queues/limits_update.py``).
UPDATE_QUEUE: Dict[Tuple[str, ...], Statement] = {
    columns: _update_queue(columns) for columns in (
        ("concurrency",), ("worker_concurrency",), ("rate_limit_max", "rate_limit_period_sec"),
        ("partition_concurrency", "partition_queue"), ("partition_queue", "partition_worker_concurrency"),
        ("partition_queue", "partition_rate_limit_max", "partition_rate_limit_period_sec"),
        ("priority_enabled",), ("partition_queue",), ("polling_interval_sec",),
    )
}

# The workflow holding a deduplication ID on a queue (at most one: a unique index).
DEDUPLICATED = Statement("""
    SELECT workflow_uuid FROM {workflow_status} WHERE queue_name = :queue_name AND deduplication_id = :dedup_id
""")
LATEST_VERSION = Statement(
    "SELECT version_name FROM {application_versions} ORDER BY version_timestamp DESC LIMIT 1")


def _claimed(rows: List[Tuple[Any, ...]]) -> List[Dict[str, Any]]:
    """Claimed rows as the dispatcher reads them."""
    return [dict(zip(CLAIMED_FIELDS + ("has_steps",), r)) for r in rows]


class QueueRows(Connection):
    def claim_queued(self, queue_name: str, limits: ClaimLimits, executor_id: str,
                     app_version: str, app_name: str) -> List[Dict[str, Any]]:
        """Move up to what the limits allow from ENQUEUED to PENDING here."""
        stamp = claim_stamp()  # the same in every try, so a retry finds what a lost COMMIT took
        # Without a shared budget there is nothing to count under a lock, so no transaction.
        for attempt in self.attempts(transaction=limits.shared):
            with attempt:
                taken = self._reclaim(queue_name, executor_id, stamp) if repeating() else []
                wanted = replace(limits, max_tasks=limits.max_tasks - len(taken))
                claimed = taken + self._claim(queue_name, wanted, executor_id, app_version, app_name, stamp)
        return claimed

    def _reclaim(self, queue_name: str, executor_id: str, stamp: int) -> List[Dict[str, Any]]:
        return _claimed(self.rows(RECLAIM, queue_name=queue_name, executor_id=executor_id, now=stamp))

    def _claim(self, queue_name: str, limits: ClaimLimits, executor_id: str,
               app_version: str, app_name: str, stamp: int) -> List[Dict[str, Any]]:
        partitioned = limits.partition_key is not None
        where = {"queue_name": queue_name, "partition_key": limits.partition_key, "app_version": app_version,
                 "app_name": app_name}
        if not limits.shared:
            if limits.max_tasks <= 0:
                return []
            rows = self.rows(CLAIM_AT_ONCE[partitioned], executor_id=executor_id, now=stamp,
                             budget=limits.max_tasks, **where)
            return _claimed(rows)
        self._lock_queue(queue_name)
        budget = self._budget(queue_name, limits)
        if budget <= 0:
            return []
        picked = self.rows(PICK[partitioned], budget=budget, **where)
        return self._take([r[0] for r in picked], executor_id, app_version, app_name, stamp) if picked else []

    def _lock_queue(self, queue_name: str) -> None:
        """Serialise the claimers of a queue with a shared budget, for the transaction."""

    def _budget(self, queue_name: str, limits: ClaimLimits) -> int:
        """What the shared limits leave: queue-wide, then for the partition key."""
        budget = limits.max_tasks
        scopes = [(False, limits.global_concurrency, limits.rate_limit_max, limits.rate_limit_period_sec)]
        if limits.partition_key is not None:
            scopes.append((True, limits.partition_concurrency, limits.partition_rate_limit_max,
                           limits.partition_rate_limit_period_sec))
        where = {"queue_name": queue_name, "partition_key": limits.partition_key}
        for partitioned, concurrency, rate_max, period in scopes:
            if concurrency is not None and budget > 0:
                running = self.one(RUNNING[partitioned], **where)
                budget = min(budget, concurrency - int(running[0] if running else 0))
            if rate_max is not None and period and budget > 0:
                since = now_ms() - int(period * 1000)
                started = self.one(STARTED_SINCE[partitioned], since=since, **where)
                budget = min(budget, rate_max - int(started[0] if started else 0))
        return budget

    def _take(self, ids: List[str], executor_id: str, app_version: str, app_name: str,
              stamp: int) -> List[Dict[str, Any]]:
        return _claimed(self.rows(TAKE, executor_id=executor_id, app_version=app_version, app_name=app_name,
                                  now=stamp, workflow_ids=ids))

    def queue_partitions(self, queue_name: str) -> List[str]:
        """Partition keys that have work waiting."""
        return [r[0] for r in self.rows(PARTITIONS, queue_name=queue_name)]

    def promote_delayed(self, queue_name: str) -> int:
        """DELAYED rows whose time has come become ENQUEUED."""
        stamp = now_ms()
        if self.one(ANY_DUE, queue_name=queue_name, now=stamp) is None:
            return 0
        return self.rowcount(PROMOTE_DUE, queue_name=queue_name, now=stamp)

    def requeue_pending(self, executor_id: str, app_version: str) -> int:
        """Workflows this executor was running from queues go back to their queues."""
        return self.rowcount(REQUEUE_PENDING, now=now_ms(), executor_id=executor_id,
                             app_version=app_version)

    # ------------------------------------------------------------------
    # Queue rows (DBOS.register_queue)
    # ------------------------------------------------------------------

    def save_queue(self, fields: Dict[str, Any], update: bool, owner: Optional[str] = None) -> bool:
        """Insert a queue row owned by ``owner``, or (with ``update``) replace the
        limits of the one there; whether it was inserted. A row another
        application owns is theirs: ``DBOSException``, nothing written."""
        for attempt in self.attempts():
            with attempt:
                inserted = self._save_queue(fields, update, owner)
        return inserted

    def _save_queue(self, fields: Dict[str, Any], update: bool, owner: Optional[str]) -> bool:
        name = fields["name"]
        found = self.one(QUEUE_OWNER, name=name)
        current = found[0] if found is not None else None
        if current is not None and owner is not None and current != owner:
            raise DBOSException(
                f"Queue {name!r} is registered by application {current!r} in this system database; queue "
                f"names are unique across the applications sharing it: give {owner!r} another queue name")
        self.rowcount(SAVE_QUEUE if update else ADD_QUEUE, queue_id=str(uuid.uuid4()), now=now_ms(),
                      **{f: fields.get(f, _DEFAULTS.get(f)) for f in QUEUE_FIELDS if f != "application_name"},
                      application_name=owner)
        return found is None

    def update_queue(self, name: str, fields: Dict[str, Any]) -> bool:
        """Write these limits of a registered queue; False if it is not registered."""
        columns = tuple(sorted(fields))
        return self.rowcount(UPDATE_QUEUE[columns], name=name, now=now_ms(), **fields) == 1

    def deduplicated_workflow(self, queue_name: str, deduplication_id: str) -> Optional[str]:
        """The workflow that holds ``deduplication_id`` on the queue; None if none does."""
        row = self.one(DEDUPLICATED, queue_name=queue_name, dedup_id=deduplication_id)
        return str(row[0]) if row is not None else None

    def is_latest_version(self, app_version: str) -> bool:
        """Whether ``app_version`` is the latest registered application version."""
        row = self.one(LATEST_VERSION)
        return row is not None and row[0] == app_version

    def get_queue(self, name: str) -> Optional[Dict[str, Any]]:
        """The queue row named ``name``, if registered."""
        rows = self.records(GET_QUEUE, name=name)
        return rows[0] if rows else None

    def list_queues(self, owners: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
        """Registered queue rows, by name: every one, or those of ``owners`` and the unclaimed."""
        if owners is None:
            return self.records(LIST_QUEUES)
        return self.records(LIST_OWNED_QUEUES, owners=list(owners)) if owners else []

    def delete_queue(self, name: str) -> None:
        """Forget a registered queue (its workflows stay)."""
        self.rowcount(DELETE_QUEUE, name=name)
