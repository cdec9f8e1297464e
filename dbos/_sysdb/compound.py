"""Single statements that write a message and its step checkpoint together.

On PostgreSQL a round trip costs about as much as a commit, and a send or a
receive inside a workflow is otherwise a transaction of five: BEGIN, the
message, the notification, the checkpoint, COMMIT. Data-modifying CTEs fold
each into one autocommit statement, atomic as a transaction is.

The checkpoint goes first and the message write depends on it: when another
execution of the workflow recorded the step already, the statement changes
nothing (it reports the conflict instead), so a message is never sent twice
nor consumed by the execution that loses.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

from .records import StepWrite

STEP_COLUMNS = (
    "workflow_uuid, function_id, function_name, output, error, "
    "child_workflow_id, started_at_epoch_ms, completed_at_epoch_ms"
)
MESSAGE_COLUMNS = "destination_uuid, topic, message, message_uuid, created_at_epoch_ms"


def step_values(step: StepWrite, completed_at_ms: int) -> List[Any]:
    """The checkpoint's values, in ``STEP_COLUMNS`` order."""
    return [step.workflow_id, step.function_id, step.function_name, step.output, step.error,
            step.child_workflow_id, step.started_at_ms, step.completed_at_ms or completed_at_ms]


def consume_params(destination_id: str, topic: str, step: StepWrite, completed_at_ms: int) -> List[Any]:
    """``consume_sql``'s parameters: the message itself is the step's output."""
    values = step_values(step, completed_at_ms)
    del values[3]
    return [destination_id, topic, *values, step.workflow_id]


def consume_sql(notes: str, steps: str, status: str, order: str) -> str:
    """Take the oldest unread message of (destination, topic) as the step's output.

    Parameters: ``consume_params``. One row ``(message, workflow status, saved)`` when a message was
    there; ``saved`` false means the step was recorded already and nothing changed.
    """
    return (
        f"WITH picked AS (SELECT message_uuid, message FROM {notes} "
        f"WHERE destination_uuid = %s AND topic = %s AND NOT consumed "
        f"ORDER BY {order} LIMIT 1 FOR UPDATE SKIP LOCKED), "
        f"saved AS (INSERT INTO {steps} ({STEP_COLUMNS}) "
        "SELECT %s, %s, %s, message, %s, %s, %s, %s FROM picked "
        "ON CONFLICT (workflow_uuid, function_id) DO NOTHING RETURNING function_id), "
        f"marked AS (UPDATE {notes} SET consumed = TRUE "
        "WHERE message_uuid IN (SELECT message_uuid FROM picked) "
        "AND EXISTS (SELECT 1 FROM saved) RETURNING message_uuid) "
        f"SELECT message, (SELECT status FROM {status} WHERE workflow_uuid = %s), "
        "EXISTS (SELECT 1 FROM saved) FROM picked"
    )


def send_sql(notes: str, steps: str, status: str, messages: int, keys: int,
             checkpointed: bool, channel: str) -> str:
    """Insert ``messages`` rows and notify ``keys`` keys, after the step's checkpoint if any.

    Parameters: with ``checkpointed``, the step's 8 values first; then 5 per
    message; then the workflow ID when checkpointed; then the keys. One row
    ``(workflow status, saved)``, both NULL without a step.
    """
    # The cast lets PREPARE type the VALUES list, which has no column to infer from.
    rows = ", ".join(["(%s, %s, %s, %s, %s::BIGINT)"] * messages)
    notified = "".join(f", pg_notify('{channel}', %s)" for _ in range(keys))
    if not checkpointed:
        return (f"WITH sent AS (INSERT INTO {notes} ({MESSAGE_COLUMNS}) VALUES {rows} "
                f"ON CONFLICT (message_uuid) DO NOTHING RETURNING 1) SELECT NULL, NULL{notified}")
    return (
        f"WITH saved AS (INSERT INTO {steps} ({STEP_COLUMNS}) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (workflow_uuid, function_id) DO NOTHING RETURNING function_id), "
        f"sent AS (INSERT INTO {notes} ({MESSAGE_COLUMNS}) "
        f"SELECT * FROM (VALUES {rows}) AS v WHERE EXISTS (SELECT 1 FROM saved) "
        "ON CONFLICT (message_uuid) DO NOTHING RETURNING 1) "
        f"SELECT (SELECT status FROM {status} WHERE workflow_uuid = %s), "
        f"EXISTS (SELECT 1 FROM saved){notified}"
    )


def send_params(messages: Sequence[Tuple[str, str, str, str]], stamp: int, keys: Sequence[str],
                step: Optional[StepWrite], completed_at_ms: int) -> List[Any]:
    """``send_sql``'s parameters; ``messages`` as (destination, topic, text, uuid)."""
    params: List[Any] = []
    if step is not None:
        params += step_values(step, completed_at_ms)
    for destination, topic, text, uuid in messages:
        params += [destination, topic, text, uuid, stamp]
    if step is not None:
        params.append(step.workflow_id)
    return params + list(keys)


def set_event_sql(events: str, history: str, steps: str, status: str, checkpointed: bool,
                  channel: str) -> str:
    """Upsert an event's latest value and its history row, and notify its key.

    Parameters: with ``checkpointed``, the step's 8 values first; then
    workflow ID, key, value; workflow ID, function ID, key, value; the
    workflow ID when checkpointed; the key to notify. One row ``(workflow
    status, saved)``, both NULL without a step.
    """
    saved, only_if_saved, result = "", "", "SELECT NULL, NULL"
    if checkpointed:
        saved = (f"saved AS (INSERT INTO {steps} ({STEP_COLUMNS}) "
                 "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                 "ON CONFLICT (workflow_uuid, function_id) DO NOTHING RETURNING function_id), ")
        only_if_saved = " WHERE EXISTS (SELECT 1 FROM saved)"
        result = (f"SELECT (SELECT status FROM {status} WHERE workflow_uuid = %s), "
                  "EXISTS (SELECT 1 FROM saved)")
    return (
        f"WITH {saved}latest AS (INSERT INTO {events} (workflow_uuid, key, value) "
        f"SELECT %s, %s, %s{only_if_saved} "
        "ON CONFLICT (workflow_uuid, key) DO UPDATE SET value = EXCLUDED.value RETURNING 1), "
        f"kept AS (INSERT INTO {history} (workflow_uuid, function_id, key, value) "
        f"SELECT %s, %s, %s, %s{only_if_saved} "
        "ON CONFLICT (workflow_uuid, key, function_id) DO UPDATE SET value = EXCLUDED.value RETURNING 1) "
        f"{result}, pg_notify('{channel}', %s)"
    )
