"""Messages, events and streams in the system database.

Every write that someone may be waiting for also notifies its key. On
PostgreSQL that is a ``pg_notify`` inside the writing transaction, which the
server delivers only after the commit; on SQLite there is no server to tell,
and waiters in other processes poll.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from ..error import DBOSNonExistentWorkflowError, DBOSWorkflowConflictIDError
from . import compound
from .prepared import preparable
from .records import StepWrite
from .workflows import now_ms

if TYPE_CHECKING:
    from .storage import SystemDatabase

NULL_TOPIC = "__null__topic__"
NOTIFY_CHANNEL = "dbos_notify"


def message_key(destination_id: str, topic: Optional[str]) -> str:
    return f"msg::{destination_id}::{topic or NULL_TOPIC}"


def event_key(workflow_id: str, key: str) -> str:
    return f"evt::{workflow_id}::{key}"


def stream_key(workflow_id: str, key: str) -> str:
    return f"stream::{workflow_id}::{key}"


def cancel_key(workflow_id: str) -> str:
    return f"cancel::{workflow_id}"


class MessageStore:
    def __init__(self, sysdb: "SystemDatabase") -> None:
        self._sysdb = sysdb
        backend = sysdb.backend
        self._p = backend.placeholder
        self._notes = backend.qualified("notifications")
        self._events = backend.qualified("workflow_events")
        self._history = backend.qualified("workflow_events_history")
        self._streams = backend.qualified("streams")
        self._status = backend.qualified("workflow_status")
        self._steps = backend.qualified("operation_outputs")
        self._order = backend.arrival_order
        self._unread = backend.unread
        self._notify = None if sysdb.is_sqlite else f"SELECT pg_notify('{NOTIFY_CHANNEL}', {self._p})"
        # PostgreSQL runs a send or a receive and its checkpoint as one statement.
        self._one_statement = backend.writable_ctes

    def notify(self, keys: Sequence[str]) -> None:
        """Tell other processes about ``keys``; delivered when the transaction commits."""
        if self._notify is not None:
            for key in dict.fromkeys(keys):
                self._sysdb.execute(self._notify, [key])

    def _checkpoint(self, step: Optional[StepWrite]) -> Optional[str]:
        if step is None:
            return None
        row = self._sysdb.workflows.insert_step(step)
        if row is None:
            raise DBOSWorkflowConflictIDError(step.workflow_id)
        return str(row[0])

    # ------------------------------------------------------------------
    # Messages
    # ------------------------------------------------------------------

    def send(self, messages: Sequence[Tuple[str, Optional[str], str, str]],
             step: Optional[StepWrite] = None) -> Optional[str]:
        """Insert ``(destination, topic, message, message_uuid)`` rows atomically.

        A message whose UUID exists already (an idempotency key reused) is
        skipped. Returns the sending workflow's status when ``step`` is given.
        """
        try:
            if self._one_statement and messages:
                return self._sysdb.run(lambda: self._send_statement(messages, step), transaction=False)
            return self._sysdb.run(lambda: self._send_each(messages, step))
        except Exception as exc:
            self._raise_missing_destination(exc, [m[0] for m in messages])
            raise

    def _send_each(self, messages: Sequence[Tuple[str, Optional[str], str, str]],
                   step: Optional[StepWrite]) -> Optional[str]:
        sql = (
            f"INSERT INTO {self._notes} ({compound.MESSAGE_COLUMNS}) "
            f"VALUES ({', '.join([self._p] * 5)}) ON CONFLICT (message_uuid) DO NOTHING"
        )
        stamp = now_ms()
        for destination, topic, text, uuid in messages:
            self._sysdb.execute(sql, [destination, topic or NULL_TOPIC, text, uuid, stamp])
        self.notify([message_key(d, t) for d, t, _, _ in messages])
        return self._checkpoint(step)

    def _send_statement(self, messages: Sequence[Tuple[str, Optional[str], str, str]],
                        step: Optional[StepWrite]) -> Optional[str]:
        rows = [(d, t or NULL_TOPIC, text, uuid) for d, t, text, uuid in messages]
        keys = list(dict.fromkeys(message_key(d, t) for d, t, _, _ in messages))
        sql = compound.send_sql(self._notes, self._steps, self._status, len(rows), len(keys),
                                step is not None, NOTIFY_CHANNEL)
        if len(rows) == 1:
            preparable(sql)  # the usual send; bulk sends vary in length
        stamp = now_ms()
        row = self._sysdb.execute(sql, compound.send_params(rows, stamp, keys, step, stamp)).fetchone()
        return self._checked_status(step, row[0], row[1])

    @staticmethod
    def _checked_status(step: Optional[StepWrite], status: Any, saved: Any) -> Optional[str]:
        if step is None:
            return None
        if not saved:
            raise DBOSWorkflowConflictIDError(step.workflow_id)
        return str(status)

    def _raise_missing_destination(self, exc: Exception, destinations: List[str]) -> None:
        if "FOREIGN KEY" not in str(exc).upper():
            return
        found = self._existing(destinations)
        for destination in destinations:
            if destination not in found:
                raise DBOSNonExistentWorkflowError("`send` destination", destination) from exc

    def _existing(self, workflow_ids: List[str]) -> set[str]:
        marks = ", ".join([self._p] * len(workflow_ids))
        sql = f"SELECT workflow_uuid FROM {self._status} WHERE workflow_uuid IN ({marks})"
        rows = self._sysdb.run(lambda: self._sysdb.execute(sql, workflow_ids).fetchall(), transaction=False)
        return {r[0] for r in rows}

    def consume(self, destination_id: str, topic: Optional[str], step: StepWrite,
                look_first: bool = True) -> Optional[Tuple[str, str]]:
        """Take the oldest unread message and checkpoint it as ``step``, atomically.

        Returns ``(message, workflow status)``, or None when there is none.
        ``look_first`` False skips the lock-free look that spares an empty
        poll SQLite's write lock, when a message is expected.
        """
        params = [destination_id, topic or NULL_TOPIC]
        if self._one_statement:
            # No look first: when nothing is there this statement locks and writes nothing.
            return self._sysdb.run(lambda: self._consume_statement(params, step), transaction=False)
        # Most calls find nothing: look first without a write transaction, so
        # an empty poll costs one statement and never takes SQLite's write lock
        # (a writer waiting on it sleeps in the busy handler for milliseconds).
        peek = (
            f"SELECT 1 FROM {self._notes} WHERE destination_uuid = {self._p} "
            f"AND topic = {self._p} AND {self._unread} LIMIT 1"
        )
        if look_first and not self._sysdb.run(lambda: self._sysdb.execute(peek, params).fetchone(),
                                              transaction=False):
            return None
        return self._sysdb.run(lambda: self._consume_each(params, step))

    def _consume_each(self, params: List[str], step: StepWrite) -> Optional[Tuple[str, str]]:
        # SQLite: the transaction already holds the write lock, so picking and
        # marking the oldest message is one UPDATE ... RETURNING.
        p = self._p
        take = (
            f"UPDATE {self._notes} SET consumed = TRUE WHERE message_uuid = ("
            f"SELECT message_uuid FROM {self._notes} WHERE destination_uuid = {p} "
            f"AND topic = {p} AND {self._unread} ORDER BY {self._order} LIMIT 1) RETURNING message"
        )
        row = self._sysdb.execute(take, params).fetchone()
        if row is None:
            return None
        status = self._checkpoint(replace(step, output=row[0]))
        return row[0], str(status)

    def _consume_statement(self, params: List[str], step: StepWrite) -> Optional[Tuple[str, str]]:
        sql = preparable(compound.consume_sql(self._notes, self._steps, self._status, self._order))
        stamp = now_ms()
        row = self._sysdb.execute(sql, compound.consume_params(params[0], params[1], step, stamp)).fetchone()
        if row is None:
            return None
        return row[0], str(self._checked_status(step, row[1], row[2]))

    # ------------------------------------------------------------------
    # Events
    # ------------------------------------------------------------------

    def set_event(self, workflow_id: str, key: str, value: str, function_id: int,
                  step: Optional[StepWrite] = None) -> Optional[str]:
        """Upsert the latest value and its per-step history; checkpoint ``step``."""
        p = self._p
        latest = (
            f"INSERT INTO {self._events} (workflow_uuid, key, value) VALUES ({p}, {p}, {p}) "
            "ON CONFLICT (workflow_uuid, key) DO UPDATE SET value = EXCLUDED.value"
        )
        history = (
            f"INSERT INTO {self._history} (workflow_uuid, function_id, key, value) "
            f"VALUES ({p}, {p}, {p}, {p}) ON CONFLICT (workflow_uuid, key, function_id) "
            "DO UPDATE SET value = EXCLUDED.value"
        )

        def work() -> Optional[str]:
            self._sysdb.execute(latest, [workflow_id, key, value])
            self._sysdb.execute(history, [workflow_id, function_id, key, value])
            self.notify([event_key(workflow_id, key)])
            return self._checkpoint(step)

        if self._one_statement:
            return self._sysdb.run(lambda: self._set_event_statement(
                [workflow_id, key, value, workflow_id, function_id, key, value], step),
                transaction=False)
        return self._sysdb.run(work)

    def _set_event_statement(self, values: List[Any], step: Optional[StepWrite]) -> Optional[str]:
        sql = preparable(compound.set_event_sql(self._events, self._history, self._steps, self._status,
                                                step is not None, NOTIFY_CHANNEL))
        params = [] if step is None else compound.step_values(step, now_ms())
        params += values + ([] if step is None else [step.workflow_id]) + [event_key(values[0], values[1])]
        row = self._sysdb.execute(sql, params).fetchone()
        return self._checked_status(step, row[0], row[1])

    def get_event(self, workflow_id: str, key: str) -> Optional[Tuple[str]]:
        """``(value,)`` if the event was set, else None."""
        sql = f"SELECT value FROM {self._events} WHERE workflow_uuid = {self._p} AND key = {self._p}"
        row = self._sysdb.run(lambda: self._sysdb.execute(sql, [workflow_id, key]).fetchone(),
                              transaction=False)
        return (row[0],) if row else None

    def all_events(self, workflow_id: str) -> Dict[str, str]:
        sql = f"SELECT key, value FROM {self._events} WHERE workflow_uuid = {self._p}"
        rows = self._sysdb.run(lambda: self._sysdb.execute(sql, [workflow_id]).fetchall(),
                               transaction=False)
        return {r[0]: r[1] for r in rows}

    # ------------------------------------------------------------------
    # Streams
    # ------------------------------------------------------------------

    def write_stream(self, workflow_id: str, key: str, value: str, function_id: int,
                     step: Optional[StepWrite] = None) -> Optional[str]:
        """Append at the next offset (0 first); checkpoint ``step`` with it."""
        p = self._p
        sql = (
            f"INSERT INTO {self._streams} (workflow_uuid, key, value, \"offset\", function_id) "
            f"SELECT {p}, {p}, {p}, COALESCE(MAX(\"offset\") + 1, 0), {p} FROM {self._streams} "
            f"WHERE workflow_uuid = {p} AND key = {p}"
        )

        def work() -> Optional[str]:
            self._sysdb.execute(sql, [workflow_id, key, value, function_id, workflow_id, key])
            self.notify([stream_key(workflow_id, key)])
            return self._checkpoint(step)

        for attempt in range(10):
            try:
                return self._sysdb.run(work)
            except Exception as exc:
                # Two writers raced for one offset; the loser takes the next.
                if attempt == 9 or "UNIQUE" not in str(exc).upper() and "DUPLICATE" not in str(exc).upper():
                    raise
        return None

    def read_stream(self, workflow_id: str, key: str, offset: int) -> Optional[Tuple[str]]:
        sql = (
            f"SELECT value FROM {self._streams} WHERE workflow_uuid = {self._p} "
            f"AND key = {self._p} AND \"offset\" = {self._p}"
        )
        row = self._sysdb.run(
            lambda: self._sysdb.execute(sql, [workflow_id, key, offset]).fetchone(), transaction=False
        )
        return (row[0],) if row else None

