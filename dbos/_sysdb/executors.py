"""Executors: ``executors``, the heartbeat of each launched process, and
the takeover of a dead executor's PENDING workflows.

Heartbeats and the staleness test use the database's clock, so executors on
machines whose clocks disagree still agree on who is silent. A takeover
deletes the dead executor's row, guarded by its stale heartbeat, and moves
its workflows in the same transaction: of many live executors trying at
once, exactly one deletes the row, and only that one moves anything. A
restarted executor's first heartbeat makes its row fresh again, so nobody
takes over what it is about to recover itself.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from .._clock import unique_now_ms
from .connection import Connection
from .queues import REQUEUE_PENDING
from .statements import Statement

_KEY = "executor_id = :executor_id AND application_version = :app_version"

BEAT = Statement(f"""
    UPDATE {{executors}} SET heartbeat_at = {{db_now_ms}}, application_name = :application_name,
        hostname = :hostname, pid = :pid
    WHERE {_KEY}
""")

REGISTER = Statement("""
    INSERT INTO {executors} (executor_id, application_version, application_name, hostname, pid,
        started_at, heartbeat_at)
    VALUES (:executor_id, :app_version, :application_name, :hostname, :pid, {db_now_ms}, {db_now_ms})
    ON CONFLICT (executor_id, application_version) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at,
        application_name = EXCLUDED.application_name, hostname = EXCLUDED.hostname, pid = EXCLUDED.pid
""")

# Who holds an executor ID now: its row, if its heartbeat is fresh.
HOLDER = Statement(f"""
    SELECT hostname, pid FROM {{executors}} WHERE {_KEY} AND heartbeat_at >= {{db_now_ms}} - :timeout_ms
""")

# Take an executor ID for this process: only if no one holds it, its holder
# is silent, or its holder is the one the launch found and judged dead (or itself).
CLAIM_ID = Statement("""
    INSERT INTO {executors} AS e (executor_id, application_version, application_name, hostname, pid,
        started_at, heartbeat_at)
    VALUES (:executor_id, :app_version, :application_name, :hostname, :pid, {db_now_ms}, {db_now_ms})
    ON CONFLICT (executor_id, application_version) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at,
        started_at = EXCLUDED.started_at, application_name = EXCLUDED.application_name,
        hostname = EXCLUDED.hostname, pid = EXCLUDED.pid
    WHERE e.heartbeat_at < {db_now_ms} - :timeout_ms OR (e.hostname = :seen_hostname AND e.pid = :seen_pid)
""")

STALE = Statement("""
    SELECT executor_id FROM {executors}
    WHERE application_name = :application_name AND application_version = :app_version
        AND executor_id <> :executor_id AND heartbeat_at < {db_now_ms} - :timeout_ms
    ORDER BY heartbeat_at
""")

# The one claim: only the claimant that deletes the row goes on to move its workflows.
CLAIM_DEAD = Statement(f"DELETE FROM {{executors}} WHERE {_KEY} AND heartbeat_at < {{db_now_ms}} - :timeout_ms")

HAND_OVER = Statement("""
    UPDATE {workflow_status} SET executor_id = :new_executor_id, updated_at = :now
    WHERE status = 'PENDING' AND executor_id = :executor_id AND application_version = :app_version
    RETURNING workflow_uuid, recovery_attempts
""")


class ExecutorRows(Connection):
    def record_heartbeat(self, executor_id: str, app_version: str, application_name: str,
                         hostname: str, pid: int) -> bool:
        """Mark this executor alive now; False if its row was missing (first
        beat, or taken over while this process was silent)."""
        who = dict(executor_id=executor_id, app_version=app_version, application_name=application_name,
                   hostname=hostname, pid=pid)
        if self.rowcount(BEAT, **who) == 1:
            return True
        self.rowcount(REGISTER, **who)
        return False

    def executor_holder(self, executor_id: str, app_version: str,
                        timeout_ms: int) -> Optional[Tuple[Optional[str], Optional[int]]]:
        """(hostname, pid) of the process holding this executor ID, if its heartbeat is fresh."""
        row = self.one(HOLDER, executor_id=executor_id, app_version=app_version, timeout_ms=timeout_ms)
        return (row[0], row[1]) if row else None

    def claim_executor_id(self, executor_id: str, app_version: str, application_name: str,
                          hostname: str, pid: int, timeout_ms: int,
                          seen: Optional[Tuple[Optional[str], Optional[int]]]) -> bool:
        """Hold this executor ID from now on, unless a process other than
        ``seen`` (the holder found before) holds it with a fresh heartbeat."""
        seen_hostname, seen_pid = seen if seen is not None else (None, None)
        return self.rowcount(CLAIM_ID, executor_id=executor_id, app_version=app_version,
                             application_name=application_name, hostname=hostname, pid=pid,
                             timeout_ms=timeout_ms, seen_hostname=seen_hostname, seen_pid=seen_pid) == 1

    def stale_executors(self, executor_id: str, app_version: str, application_name: str,
                        timeout_ms: int) -> List[str]:
        """Other executors of this application and version silent for over ``timeout_ms``."""
        rows = self.rows(STALE, executor_id=executor_id, app_version=app_version,
                         application_name=application_name, timeout_ms=timeout_ms)
        return [r[0] for r in rows]

    def take_over_executor(self, dead_executor_id: str, app_version: str, timeout_ms: int,
                           executor_id: str) -> Optional[Dict[str, int]]:
        """Claim a silent executor's work: its queued PENDING workflows go back
        to their queues, the others become ``executor_id``'s (returned, to
        recover, with their recovery attempts). None if its heartbeat is fresh or another claimant won."""
        dead = dict(executor_id=dead_executor_id, app_version=app_version)
        for attempt in self.attempts():
            with attempt:
                moved: Optional[Dict[str, int]] = None
                if self.rowcount(CLAIM_DEAD, **dead, timeout_ms=timeout_ms) == 1:
                    stamp = unique_now_ms()  # never a later claim's stamp: see CLAIM_MANY_FOR_RECOVERY
                    self.rowcount(REQUEUE_PENDING, **dead, now=stamp)
                    rows = self.rows(HAND_OVER, **dead, new_executor_id=executor_id, now=stamp)
                    moved = {r[0]: int(r[1]) for r in rows}
        return moved
