"""``PostgresSystemDatabase``: what PostgreSQL does better than the portable SQL.

- A round trip costs about as much as a commit, and a send or a receive
  inside a workflow is otherwise a transaction of five: BEGIN, the message,
  the notification, the checkpoint, COMMIT. Data-modifying CTEs fold each
  into one autocommit statement, atomic as a transaction is. The checkpoint
  goes first and the message write depends on it: when another execution of
  the workflow recorded the step already, the statement changes nothing (it
  reports the conflict instead), so a message is never sent twice nor
  consumed by the execution that loses.
- Other processes hear of each write at once: ``pg_notify`` in the writing
  transaction, delivered after its commit to every ``Listener``.
- Claimers skip the rows others hold (``{skip_locked}``), and take a lock
  for a queue whose budget they share.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

from .._clock import now_ms
from .database import SystemDatabase
from .listener import Listener
from .messages import MESSAGE_INSERT, message_keys
from .notifications import NULL_TOPIC, event_key, queue_key
from .records import Message, StepWrite
from .statements import Statement
from .steps import SAVE_STEP, STEP_INSERT, step_params
from .tries import retries
from .workflows import start_sql

NOTIFY = Statement("SELECT pg_notify('{notify_channel}', :key)")


@lru_cache(maxsize=64)
def notifying_start_statement(columns: Tuple[str, ...]) -> Statement:
    """A workflow's start (``start_statement``) that also notifies ``:notify_key``."""
    return Statement(f"WITH started AS ({start_sql(columns)}) SELECT *, pg_notify('{{notify_channel}}', "
                     ":notify_key) FROM started", prepare=True)
LOCK_QUEUE = Statement("SELECT pg_advisory_xact_lock(hashtext(:lock_key))")

_SAVE_STEP = f"saved AS ({SAVE_STEP} RETURNING function_id)"
# The cast lets PREPARE type the VALUES list, which has no column to infer from.
_NEW_MESSAGES = MESSAGE_INSERT + " SELECT d, t, m, u, s, c::BIGINT FROM (VALUES :messages) AS v(d, t, m, u, s, c)"
_STATUS = "(SELECT status FROM {workflow_status} WHERE workflow_uuid = :workflow_id)"

# One row per key notified: (sender's status, whether the step was saved).
SEND_AND_RECORD = Statement(f"""
    WITH {_SAVE_STEP},
    sent AS ({_NEW_MESSAGES} WHERE EXISTS (SELECT 1 FROM saved)
        ON CONFLICT (message_uuid) DO NOTHING RETURNING 1)
    SELECT {_STATUS}, EXISTS (SELECT 1 FROM saved), pg_notify('{{notify_channel}}', k.key)
    FROM (VALUES :keys) AS k(key)
""", prepare=True)

SEND = Statement(f"""
    WITH sent AS ({_NEW_MESSAGES} ON CONFLICT (message_uuid) DO NOTHING RETURNING 1)
    SELECT NULL, NULL, pg_notify('{{notify_channel}}', k.key) FROM (VALUES :keys) AS k(key)
""", prepare=True)

# One row (message, receiver's status, whether the step was saved) when a message was there.
CONSUME_AND_RECORD = Statement(f"""
    WITH picked AS (
        SELECT message_uuid, message, serialization FROM {{notifications}}
        WHERE destination_uuid = :destination_id AND topic = :topic AND NOT consumed
        ORDER BY {{arrival_order}} LIMIT 1 FOR UPDATE SKIP LOCKED),
    saved AS (
        {STEP_INSERT}
        SELECT :workflow_id, :function_id, :function_name, message, :error,
            :child_workflow_id, :started_at_ms, :completed_at_ms, serialization FROM picked
        ON CONFLICT (workflow_uuid, function_id) DO NOTHING RETURNING function_id),
    marked AS (
        UPDATE {{notifications}} SET consumed = TRUE
        WHERE message_uuid IN (SELECT message_uuid FROM picked) AND EXISTS (SELECT 1 FROM saved)
        RETURNING message_uuid)
    SELECT message, {_STATUS}, EXISTS (SELECT 1 FROM saved), serialization FROM picked
""", prepare=True)

_EVENT_WRITES = """
    latest AS (
        INSERT INTO {{workflow_events}} (workflow_uuid, key, value, serialization)
        SELECT :workflow_id, :key, :value, :event_serialization{only_if_saved}
        ON CONFLICT (workflow_uuid, key)
            DO UPDATE SET value = EXCLUDED.value, serialization = EXCLUDED.serialization RETURNING 1),
    kept AS (
        INSERT INTO {{workflow_events_history}} (workflow_uuid, function_id, key, value, serialization)
        SELECT :workflow_id, :function_id, :key, :value, :event_serialization{only_if_saved}
        ON CONFLICT (workflow_uuid, key, function_id)
            DO UPDATE SET value = EXCLUDED.value, serialization = EXCLUDED.serialization RETURNING 1)"""

# One row (setter's status, whether the step was saved); both NULL without a step.
SET_EVENT_AND_RECORD = Statement(
    f"WITH {_SAVE_STEP},"
    + _EVENT_WRITES.format(only_if_saved=" WHERE EXISTS (SELECT 1 FROM saved)")
    + f"\n    SELECT {_STATUS}, EXISTS (SELECT 1 FROM saved), pg_notify('{{notify_channel}}', :notify_key)",
    prepare=True)

SET_EVENT = Statement(
    "WITH" + _EVENT_WRITES.format(only_if_saved="")
    + "\n    SELECT NULL, NULL, pg_notify('{notify_channel}', :notify_key)",
    prepare=True)


class PostgresSystemDatabase(SystemDatabase):
    dialect = "postgres"
    announces_after_commit = False  # NOTIFY is sent in the transaction and delivered at its COMMIT

    def _start(self, row: Dict[str, Any]) -> Tuple[Statement, Dict[str, Any]]:
        """An enqueue's start also wakes the queue's workers in every process as it commits."""
        if row.get("status") == "ENQUEUED" and row.get("queue_name"):
            return notifying_start_statement(tuple(row)), {**row, "notify_key": queue_key(row["queue_name"])}
        return super()._start(row)

    def notify(self, keys: Sequence[str]) -> None:
        for key in dict.fromkeys(keys):
            self.one(NOTIFY, key=key)

    def listen(self, on_key: Callable[[str], None]) -> Optional[Listener]:
        listener = Listener(self.url, on_key, self.outage)
        listener.start()
        return listener

    def _lock_queue(self, queue_name: str) -> None:
        self.one(LOCK_QUEUE, lock_key=f"dbos-queue:{queue_name}")

    def _send_messages(self, messages: Sequence[Message], step: Optional[StepWrite]) -> Optional[str]:
        if not messages:  # nothing to send: only the checkpoint
            return super()._send_messages(messages, step)
        stamp = now_ms()
        rows = [(d, t or NULL_TOPIC, text, uuid, stored, stamp) for d, t, text, uuid, stored in messages]
        keys = [(key,) for key in message_keys(messages)]
        if step is None:
            self.one(SEND, messages=rows, keys=keys)
            return None
        before = retries()
        row = self.one(SEND_AND_RECORD, messages=rows, keys=keys, **step_params(step))
        assert row is not None, "a send notifies at least one key"
        return self._checked_status(step, row[0], row[1], before)

    def consume_message(self, destination_id: str, topic: Optional[str], step: StepWrite,
                        look_first: bool = True) -> Optional[Tuple[str, str, Optional[str]]]:
        # No look first: when nothing is there this statement locks and writes nothing.
        before = retries()
        row = self.one(CONSUME_AND_RECORD, destination_id=destination_id, topic=topic or NULL_TOPIC,
                       **step_params(step))
        if row is None or not row[2]:
            earlier = self.consumed_before(step, before)
            if earlier is not None:
                return earlier
        if row is None:
            return None
        return row[0], str(self._checked_status(step, row[1], row[2], before)), row[3]

    def set_event(self, workflow_id: str, key: str, value: str, function_id: int,
                  step: Optional[StepWrite] = None, serialization: Optional[str] = None) -> Optional[str]:
        # Its own name: the step's serialization (step_params) is that of the step's output.
        event = {"workflow_id": workflow_id, "key": key, "value": value, "function_id": function_id,
                 "notify_key": event_key(workflow_id, key), "event_serialization": serialization}
        if step is None:
            self.one(SET_EVENT, **event)
            return None
        before = retries()
        row = self.one(SET_EVENT_AND_RECORD, **{**step_params(step), **event})
        assert row is not None, "the statement returns one row"
        return self._checked_status(step, row[0], row[1], before)

    def _checked_status(self, step: StepWrite, status: object, saved: object, before: int) -> str:
        if not saved:
            return self.same_step_status(step, before)
        return str(status)
