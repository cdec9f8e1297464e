"""Messages, events and streams: ``notifications``, ``workflow_events`` (with
their history) and ``streams``.

Inside a workflow each write is recorded as a step in the same transaction,
so a message is sent once and a receive consumes once, however often the
workflow is replayed. Every write someone may wait for also notifies its key
(``notify``). These are the portable versions, which SQLite runs as they are;
``PostgresSystemDatabase`` does the common ones in one statement.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from .._clock import now_ms
from ..error import DBOSNonExistentWorkflowError, DBOSSystemDatabaseError, DBOSWorkflowConflictIDError
from .errors import FOREIGN_KEY, UNIQUE, violation
from .notifications import NULL_TOPIC, event_key, message_key, stream_key
from .records import Message, Received, StepWrite
from .statements import Statement
from .tries import retried_since, retries
from .workflows import WorkflowRows

MESSAGE_INSERT = ("INSERT INTO {notifications} (destination_uuid, topic, message, message_uuid, "
                  "serialization, created_at_epoch_ms)")

INSERT_MESSAGE = Statement(MESSAGE_INSERT + """
    VALUES (:destination_id, :topic, :message, :message_uuid, :serialization, :now)
    ON CONFLICT (message_uuid) DO NOTHING
""")

# A receive reads; the message is consumed with the workflow's next write
# (``consume_received``), so a look costs no write lock and no commit.
FIND_MESSAGE = Statement("""
    SELECT message_uuid, message, serialization FROM {notifications}
    WHERE destination_uuid = :destination_id AND topic = :topic AND {unread}
    ORDER BY {arrival_order} LIMIT 1
""", prepare=True)

MARK_CONSUMED = Statement("""
    UPDATE {notifications} SET consumed = TRUE WHERE message_uuid = :message_uuid AND {unread}
""", prepare=True)

SET_LATEST_EVENT = Statement("""
    INSERT INTO {workflow_events} (workflow_uuid, key, value, serialization)
    VALUES (:workflow_id, :key, :value, :serialization)
    ON CONFLICT (workflow_uuid, key) DO UPDATE SET value = EXCLUDED.value, serialization = EXCLUDED.serialization
""")

KEEP_EVENT = Statement("""
    INSERT INTO {workflow_events_history} (workflow_uuid, function_id, key, value, serialization)
    VALUES (:workflow_id, :function_id, :key, :value, :serialization)
    ON CONFLICT (workflow_uuid, key, function_id)
        DO UPDATE SET value = EXCLUDED.value, serialization = EXCLUDED.serialization
""")

GET_EVENT = Statement("""
    SELECT value, serialization FROM {workflow_events} WHERE workflow_uuid = :workflow_id AND key = :key
""")

ALL_EVENTS = Statement("SELECT key, value, serialization FROM {workflow_events} WHERE workflow_uuid = :workflow_id")

WRITE_STREAM = Statement("""
    INSERT INTO {streams} (workflow_uuid, key, value, "offset", function_id, serialization)
    SELECT :workflow_id, :key, :value, COALESCE(MAX("offset") + 1, 0), :function_id, :serialization
    FROM {streams} WHERE workflow_uuid = :workflow_id AND key = :key
""")

READ_STREAM = Statement("""
    SELECT value, serialization FROM {streams} WHERE workflow_uuid = :workflow_id AND key = :key AND "offset" = :offset
""")

# Two writers of one stream may race for the same offset; the loser takes the next.
STREAM_WRITE_TRIES = 10


def message_keys(messages: Sequence[Message]) -> List[str]:
    """The keys a send wakes, once each."""
    return list(dict.fromkeys(message_key(m[0], m[1]) for m in messages))


class MessageRows(WorkflowRows):
    # ------------------------------------------------------------------
    # Messages
    # ------------------------------------------------------------------

    def send_messages(self, messages: Sequence[Message], step: Optional[StepWrite] = None,
                      received: Optional[Received] = None, announce: bool = True) -> Optional[str]:
        """Insert the messages and checkpoint ``step`` with them, atomically;
        ``received``, a message the sender took, is consumed in the same
        transaction (``consume_received``). ``announce`` False: no other
        process is told (every destination waits in the sender's, woken there).

        A message whose UUID exists already (an idempotency key reused) is
        skipped. Returns the sending workflow's status when ``step`` is given.
        """
        try:
            return self._send_messages(messages, step, received, announce)
        except DBOSSystemDatabaseError as exc:
            self._raise_missing_destination(exc, [m[0] for m in messages])
            raise

    def _send_messages(self, messages: Sequence[Message], step: Optional[StepWrite],
                       received: Optional[Received], announce: bool) -> Optional[str]:
        before = retries()
        for attempt in self.attempts():
            with attempt:
                self._consume_carried(received, before)
                stamp = now_ms()
                for destination, topic, text, uuid, stored in messages:
                    self.rowcount(INSERT_MESSAGE, destination_id=destination, topic=topic or NULL_TOPIC,
                                  message=text, message_uuid=uuid, serialization=stored, now=stamp)
                if announce:
                    self.notify(message_keys(messages))
                status = self._checkpoint(step)
        return status

    def _raise_missing_destination(self, exc: Exception, destinations: List[str]) -> None:
        if violation(exc) != FOREIGN_KEY:
            return
        found = set(self.existing_workflows(destinations))
        for destination in destinations:
            if destination not in found:
                raise DBOSNonExistentWorkflowError("`send` destination", destination) from exc

    def _checkpoint(self, step: Optional[StepWrite]) -> Optional[str]:
        """Checkpoint ``step`` in the unit of work at hand; the workflow's status."""
        return None if step is None else self.record_step(step)

    def find_message(self, destination_id: str, topic: Optional[str]) -> Optional[Tuple[str, str, Optional[str]]]:
        """The oldest unread message: ``(message UUID, message, stored format)``,
        or None. Only a read: the receiver consumes it with ``consume_received``."""
        row = self.one(FIND_MESSAGE, destination_id=destination_id, topic=topic or NULL_TOPIC)
        return None if row is None else (str(row[0]), str(row[1]), row[2])

    def consume_received(self, received: Received) -> str:
        """Mark the received message consumed and checkpoint its receive,
        atomically; the workflow's status. ``DBOSWorkflowConflictIDError``
        when another execution of the workflow took it or recorded the receive."""
        before = retries()
        for attempt in self.attempts():
            with attempt:
                status = self._consume(received, before)
        return status

    def _consume_carried(self, received: Optional[Received], before: int) -> None:
        """In the unit of work at hand: consume the message its writer received, if any."""
        if received is not None:
            self._consume(received, before)

    def _consume(self, received: Received, before: int) -> str:
        status = self.record_step(received.step)
        # None marked: taken by another execution, or by this one's try whose
        # COMMIT went through unanswered (which recorded the step as given).
        if self.rowcount(MARK_CONSUMED, message_uuid=received.message_uuid) == 0 and not retried_since(before):
            raise DBOSWorkflowConflictIDError(received.step.workflow_id)
        return status

    # ------------------------------------------------------------------
    # Events
    # ------------------------------------------------------------------

    def set_event(self, workflow_id: str, key: str, value: str, function_id: int,
                  step: Optional[StepWrite] = None, serialization: Optional[str] = None,
                  received: Optional[Received] = None) -> Optional[str]:
        """Upsert the latest value and its per-step history; checkpoint ``step``
        (and consume ``received``, as ``send_messages`` does)."""
        event = {"workflow_id": workflow_id, "key": key, "value": value, "function_id": function_id,
                 "serialization": serialization}
        before = retries()
        for attempt in self.attempts():
            with attempt:
                self._consume_carried(received, before)
                self.rowcount(SET_LATEST_EVENT, **event)
                self.rowcount(KEEP_EVENT, **event)
                self.notify([event_key(workflow_id, key)])
                status = self._checkpoint(step)
        return status

    def get_event(self, workflow_id: str, key: str) -> Optional[Tuple[str, Optional[str]]]:
        """``(value, stored format)`` if the event was set, else None."""
        row = self.one(GET_EVENT, workflow_id=workflow_id, key=key)
        return (row[0], row[1]) if row else None

    def all_events(self, workflow_id: str) -> Dict[str, Tuple[str, Optional[str]]]:
        """Every event of a workflow: its latest value and stored format."""
        return {r[0]: (r[1], r[2]) for r in self.rows(ALL_EVENTS, workflow_id=workflow_id)}

    # ------------------------------------------------------------------
    # Streams
    # ------------------------------------------------------------------

    def write_stream(self, workflow_id: str, key: str, value: str, function_id: int,
                     step: Optional[StepWrite] = None, serialization: Optional[str] = None,
                     received: Optional[Received] = None) -> Optional[str]:
        """Append at the next offset (0 first); checkpoint ``step`` with it
        (and consume ``received``, as ``send_messages`` does)."""
        for tries_left in range(STREAM_WRITE_TRIES - 1, -1, -1):
            try:
                return self._append(workflow_id, key, (value, serialization), function_id, step, received)
            except DBOSSystemDatabaseError as exc:
                if not tries_left or violation(exc) != UNIQUE:
                    raise
        return None

    def _append(self, workflow_id: str, key: str, value: Tuple[str, Optional[str]], function_id: int,
                step: Optional[StepWrite], received: Optional[Received]) -> Optional[str]:
        before = retries()
        for attempt in self.attempts():
            with attempt:
                self._consume_carried(received, before)
                self.rowcount(WRITE_STREAM, workflow_id=workflow_id, key=key, value=value[0],
                              serialization=value[1], function_id=function_id)
                self.notify([stream_key(workflow_id, key)])
                status = self._checkpoint(step)
        return status

    def read_stream(self, workflow_id: str, key: str, offset: int) -> Optional[Tuple[str, Optional[str]]]:
        """``(value, stored format)`` at ``offset`` of the stream, if written yet."""
        row = self.one(READ_STREAM, workflow_id=workflow_id, key=key, offset=offset)
        return (row[0], row[1]) if row else None
