"""The keys that wake waiters, within a process and across processes.

A write someone may wait for (a message, an event, a stream value, a
cancellation, a workflow's outcome) is announced under a key. In the writing
process the engine wakes local waiters on it directly; on PostgreSQL the key
is also the payload of a ``pg_notify`` on ``NOTIFY_CHANNEL``, which the
listener of every other process hands to its own waiters. A workflow's own ID
is the key of its outcome.
"""

from __future__ import annotations

from typing import Optional

NOTIFY_CHANNEL = "dbos_notify"
# The topic a message sent without one is stored under.
NULL_TOPIC = "__null__topic__"


def message_key(destination_id: str, topic: Optional[str]) -> str:
    return f"msg::{destination_id}::{topic or NULL_TOPIC}"


def event_key(workflow_id: str, key: str) -> str:
    return f"evt::{workflow_id}::{key}"


def stream_key(workflow_id: str, key: str) -> str:
    return f"stream::{workflow_id}::{key}"


QUEUE_PREFIX = "queue::"


def queue_key(queue_name: str) -> str:
    """Work was enqueued on the queue: its workers look now."""
    return f"{QUEUE_PREFIX}{queue_name}"


CANCEL_PREFIX = "cancel::"


def cancel_key(workflow_id: str) -> str:
    return f"{CANCEL_PREFIX}{workflow_id}"


# Handed to a listener's callback each time LISTEN is (again) in place:
# notifications sent while the connection was down are lost, so whoever waits
# must look again.
LISTENING = "dbos::listening"
