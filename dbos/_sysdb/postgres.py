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
from .records import Message, Received, StepWrite
from .statements import Statement
from .steps import SAVE_STEP, STEP_INSERT, STEP_PARAMS, step_params
from .tries import retries
from .workflows import start_sql

NOTIFY = Statement("SELECT pg_notify('{notify_channel}', :key)")


@lru_cache(maxsize=64)
def notifying_start_statement(columns: Tuple[str, ...]) -> Statement:
    """A workflow's start (``start_statement``) that also notifies ``:notify_key``."""
    return Statement(f"WITH started AS ({start_sql(columns)}) SELECT *, pg_notify('{{notify_channel}}', "
                     ":notify_key) FROM started", prepare=True)
LOCK_QUEUE = Statement("SELECT pg_advisory_xact_lock(hashtext(:lock_key))")

# The cast lets PREPARE type the VALUES list, which has no column to infer from.
_NEW_MESSAGES = MESSAGE_INSERT + " SELECT d, t, m, u, s, c::BIGINT FROM (VALUES :messages) AS v(d, t, m, u, s, c)"
_STATUS = "(SELECT status FROM {workflow_status} WHERE workflow_uuid = :workflow_id)"
_SAVE_STEP = f"saved AS ({SAVE_STEP} RETURNING function_id)"

SEND = Statement(f"""
    WITH sent AS ({_NEW_MESSAGES} ON CONFLICT (message_uuid) DO NOTHING RETURNING 1)
    SELECT NULL, NULL, pg_notify('{{notify_channel}}', k.key) FROM (VALUES :keys) AS k(key)
""", prepare=True)

SEND_QUIETLY = Statement(f"{_NEW_MESSAGES} ON CONFLICT (message_uuid) DO NOTHING", prepare=True)

# A received message's consumption, its receive's checkpoint first: one row
# (receiver's status, whether the checkpoint was saved). The checkpoint is
# written only while the message is unread, and the message marked only
# when the checkpoint was written, so another execution's take or record of
# either one changes nothing here.
_RECEIVED = "r_"
_TOOK = f"""took AS (
        {STEP_INSERT}
        SELECT {", ".join(f":{_RECEIVED}{p}" for p in STEP_PARAMS)} FROM {{notifications}}
        WHERE message_uuid = :{_RECEIVED}message_uuid AND NOT consumed
        ON CONFLICT (workflow_uuid, function_id) DO NOTHING RETURNING function_id),
    marked AS (
        UPDATE {{notifications}} SET consumed = TRUE
        WHERE message_uuid = :{_RECEIVED}message_uuid AND EXISTS (SELECT 1 FROM took) RETURNING 1)"""
_RECEIVED_STATUS = "(SELECT status FROM {workflow_status} WHERE workflow_uuid = :r_workflow_id)"

CONSUME_RECEIVED = Statement(f"WITH {_TOOK} SELECT {_RECEIVED_STATUS}, EXISTS (SELECT 1 FROM took)", prepare=True)

def _writer_checkpoint(consumes: bool) -> str:
    """``WITH`` and the CTEs of a write from a workflow: its checkpoint
    (``saved``), and with ``consumes`` first the writer's received message
    (``took``), the checkpoint then written only if that was."""
    if not consumes:
        return f"WITH {_SAVE_STEP},"
    return f"""WITH {_TOOK},
    saved AS (
        {STEP_INSERT}
        SELECT {", ".join(f":{p}" for p in STEP_PARAMS)} WHERE EXISTS (SELECT 1 FROM took)
        ON CONFLICT (workflow_uuid, function_id) DO NOTHING RETURNING function_id),"""


def _took(consumes: bool) -> str:
    """The last column of a writer's row: whether its received message was consumed."""
    return "EXISTS (SELECT 1 FROM took)" if consumes else "TRUE"


@lru_cache(maxsize=4)
def send_and_record(consumes: bool, notifies: bool) -> Statement:
    """A send from a workflow, with its checkpoint (``_writer_checkpoint``):
    the messages are written only if the checkpoint was. ``notifies``: every
    key, for other processes' waiters. Rows (sender's status, whether the
    send was saved, None, whether the receive was): one per key notified,
    else one."""
    notify = "pg_notify('{notify_channel}', k.key)" if notifies else "NULL"
    return Statement(f"""
    {_writer_checkpoint(consumes)}
    sent AS ({_NEW_MESSAGES} WHERE EXISTS (SELECT 1 FROM saved)
        ON CONFLICT (message_uuid) DO NOTHING RETURNING 1)
    SELECT {_STATUS}, EXISTS (SELECT 1 FROM saved), {notify}, {_took(consumes)}
    {"FROM (VALUES :keys) AS k(key)" if notifies else ""}
    """, prepare=True)


def received_params(received: Received) -> Dict[str, Any]:
    """``CONSUME_RECEIVED``'s parameters: the receive's checkpoint, named apart from a send's."""
    params = {f"{_RECEIVED}{k}": v for k, v in step_params(received.step).items()}
    params[f"{_RECEIVED}message_uuid"] = received.message_uuid
    return params


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


@lru_cache(maxsize=2)
def set_event_and_record(consumes: bool) -> Statement:
    """An event set from a workflow, with its checkpoint (``_writer_checkpoint``):
    the event is written only if the checkpoint was. One row (setter's
    status, whether the step was saved, None, whether the receive was)."""
    return Statement(
        _writer_checkpoint(consumes)
        + _EVENT_WRITES.format(only_if_saved=" WHERE EXISTS (SELECT 1 FROM saved)")
        + f"\n    SELECT {_STATUS}, EXISTS (SELECT 1 FROM saved), pg_notify('{{notify_channel}}', :notify_key), "
        + _took(consumes),
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

    def _send_messages(self, messages: Sequence[Message], step: Optional[StepWrite],
                       received: Optional[Received], announce: bool) -> Optional[str]:
        assert step is not None or received is None, "a receive is carried by the workflow's own write"
        if not messages:  # nothing to send: only the checkpoint
            return super()._send_messages(messages, step, received, announce)
        stamp = now_ms()
        rows = [(d, t or NULL_TOPIC, text, uuid, stored, stamp) for d, t, text, uuid, stored in messages]
        keys = [(key,) for key in message_keys(messages)]
        if step is None:
            if announce:
                self.one(SEND, messages=rows, keys=keys)
            else:
                self.rowcount(SEND_QUIETLY, messages=rows)
            return None
        before = retries()
        params = {**step_params(step), **(received_params(received) if received else {})}
        statement = send_and_record(received is not None, announce)
        row = self.one(statement, messages=rows, **({"keys": keys} if announce else {}), **params)
        assert row is not None, "the statement returns a row"
        return self._carried_status(step, received, row, before)

    def consume_received(self, received: Received) -> str:
        before = retries()
        row = self.one(CONSUME_RECEIVED, **received_params(received))
        assert row is not None, "the statement returns one row"
        return self._checked_status(received.step, row[0], row[1], before)

    def set_event(self, workflow_id: str, key: str, value: str, function_id: int,
                  step: Optional[StepWrite] = None, serialization: Optional[str] = None,
                  received: Optional[Received] = None) -> Optional[str]:
        # Its own name: the step's serialization (step_params) is that of the step's output.
        event = {"workflow_id": workflow_id, "key": key, "value": value, "function_id": function_id,
                 "notify_key": event_key(workflow_id, key), "event_serialization": serialization}
        if step is None:  # from a step: no checkpoint, nothing received to carry
            assert received is None, "a receive is carried by the workflow's own write"
            self.one(SET_EVENT, **event)
            return None
        before = retries()
        params = {**step_params(step), **event, **(received_params(received) if received else {})}
        row = self.one(set_event_and_record(received is not None), **params)
        assert row is not None, "the statement returns one row"
        return self._carried_status(step, received, row, before)

    def _carried_status(self, step: StepWrite, received: Optional[Received], row: Sequence[Any],
                        before: int) -> str:
        """The writer's status from a row (status, saved, ..., took): a receive
        carried and not taken was this writer's own earlier try, or a conflict."""
        if received is not None and not row[3]:
            self.same_step_status(received.step, before)  # raises unless this was our own try
        return self._checked_status(step, row[0], row[1], before)

    def _checked_status(self, step: StepWrite, status: object, saved: object, before: int) -> str:
        if not saved:
            return self.same_step_status(step, before)
        return str(status)
