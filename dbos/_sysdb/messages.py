"""Messages, events and streams: ``notifications``, ``workflow_events`` (with
their history) and ``streams``.

Inside a workflow each write is recorded as a step in the same transaction,
so a message is sent once and a receive consumes once, however often the
workflow is replayed. Every write someone may wait for also notifies its key
(``notify``). These are the portable versions, which SQLite runs as they are;
``PostgresSystemDatabase`` does the common ones in one statement.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, List, Optional, Sequence, Tuple

from .._clock import now_ms
from ..error import DBOSNonExistentWorkflowError, DBOSSystemDatabaseError
from .errors import FOREIGN_KEY, UNIQUE, violation
from .notifications import NULL_TOPIC, event_key, message_key, stream_key
from .records import Message, StepWrite
from .statements import Statement
from .steps import RECORDED_STEP
from .tries import retried_since, retries
from .workflows import WorkflowRows

MESSAGE_INSERT = ("INSERT INTO {notifications} (destination_uuid, topic, message, message_uuid, "
                  "serialization, created_at_epoch_ms)")

INSERT_MESSAGE = Statement(MESSAGE_INSERT + """
    VALUES (:destination_id, :topic, :message, :message_uuid, :serialization, :now)
    ON CONFLICT (message_uuid) DO NOTHING
""")

# Most receives find nothing: a look without a write transaction costs one
# statement and never takes SQLite's write lock (a writer waiting on it
# sleeps in the busy handler for milliseconds).
PEEK_MESSAGE = Statement("""
    SELECT 1 FROM {notifications}
    WHERE destination_uuid = :destination_id AND topic = :topic AND {unread} LIMIT 1
""")

# Inside a write transaction (SQLite's holds the write lock), picking and
# marking the oldest unread message is one UPDATE ... RETURNING.
TAKE_MESSAGE = Statement("""
    UPDATE {notifications} SET consumed = TRUE WHERE message_uuid = (
        SELECT message_uuid FROM {notifications}
        WHERE destination_uuid = :destination_id AND topic = :topic AND {unread}
        ORDER BY {arrival_order} LIMIT 1)
    RETURNING message, serialization
""")

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

    def send_messages(self, messages: Sequence[Message], step: Optional[StepWrite] = None) -> Optional[str]:
        """Insert the messages and checkpoint ``step`` with them, atomically.

        A message whose UUID exists already (an idempotency key reused) is
        skipped. Returns the sending workflow's status when ``step`` is given.
        """
        try:
            return self._send_messages(messages, step)
        except DBOSSystemDatabaseError as exc:
            self._raise_missing_destination(exc, [m[0] for m in messages])
            raise

    def _send_messages(self, messages: Sequence[Message], step: Optional[StepWrite]) -> Optional[str]:
        for attempt in self.attempts():
            with attempt:
                stamp = now_ms()
                for destination, topic, text, uuid, stored in messages:
                    self.rowcount(INSERT_MESSAGE, destination_id=destination, topic=topic or NULL_TOPIC,
                                  message=text, message_uuid=uuid, serialization=stored, now=stamp)
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

    def consume_message(self, destination_id: str, topic: Optional[str], step: StepWrite,
                        look_first: bool = True) -> Optional[Tuple[str, str, Optional[str]]]:
        """Take the oldest unread message and checkpoint it as ``step``, atomically.

        Returns ``(message, workflow status, stored format)``, or None when there is none.
        ``look_first`` False skips the lock-free look that spares an empty
        poll the write lock, when a message is expected.
        """
        where = {"destination_id": destination_id, "topic": topic or NULL_TOPIC}
        if look_first and self.one(PEEK_MESSAGE, **where) is None:
            return None
        before = retries()
        for attempt in self.attempts():
            with attempt:
                found = self.consumed_before(step, before) or self._take_message(where, step)
        return found

    def _take_message(self, where: Dict[str, str], step: StepWrite) -> Optional[Tuple[str, str, Optional[str]]]:
        taken = self.one(TAKE_MESSAGE, **where)
        if taken is None:
            return None
        status = self._checkpoint(replace(step, output=taken[0], serialization=taken[1]))
        return taken[0], str(status), taken[1]

    def consumed_before(self, step: StepWrite, before: int) -> Optional[Tuple[str, str, Optional[str]]]:
        """After a receive tried again (since ``retries()`` was ``before``):
        ``(message, workflow status, stored format)`` if the first try's COMMIT went through
        and recorded ``step``, so that the retry neither takes the next
        message nor waits for one already taken."""
        if not retried_since(before):
            return None
        row = self.one(RECORDED_STEP, workflow_id=step.workflow_id, function_id=step.function_id)
        if row is None or row[0] != step.function_name or row[1] is None:
            return None
        return str(row[1]), str(row[4]), row[5]

    # ------------------------------------------------------------------
    # Events
    # ------------------------------------------------------------------

    def set_event(self, workflow_id: str, key: str, value: str, function_id: int,
                  step: Optional[StepWrite] = None, serialization: Optional[str] = None) -> Optional[str]:
        """Upsert the latest value and its per-step history; checkpoint ``step``."""
        event = {"workflow_id": workflow_id, "key": key, "value": value, "function_id": function_id,
                 "serialization": serialization}
        for attempt in self.attempts():
            with attempt:
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
                     step: Optional[StepWrite] = None, serialization: Optional[str] = None) -> Optional[str]:
        """Append at the next offset (0 first); checkpoint ``step`` with it."""
        for tries_left in range(STREAM_WRITE_TRIES - 1, -1, -1):
            try:
                return self._append(workflow_id, key, (value, serialization), function_id, step)
            except DBOSSystemDatabaseError as exc:
                if not tries_left or violation(exc) != UNIQUE:
                    raise
        return None

    def _append(self, workflow_id: str, key: str, value: Tuple[str, Optional[str]], function_id: int,
                step: Optional[StepWrite]) -> Optional[str]:
        for attempt in self.attempts():
            with attempt:
                self.rowcount(WRITE_STREAM, workflow_id=workflow_id, key=key, value=value[0],
                              serialization=value[1], function_id=function_id)
                self.notify([stream_key(workflow_id, key)])
                status = self._checkpoint(step)
        return status

    def read_stream(self, workflow_id: str, key: str, offset: int) -> Optional[Tuple[str, Optional[str]]]:
        """``(value, stored format)`` at ``offset`` of the stream, if written yet."""
        row = self.one(READ_STREAM, workflow_id=workflow_id, key=key, offset=offset)
        return (row[0], row[1]) if row else None
