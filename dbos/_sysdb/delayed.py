"""Delayed workflows: changing when a DELAYED row becomes ENQUEUED, and
bouncing a debounced one.

A debounced workflow is a DELAYED row with ``is_debounced`` set, holding the
deduplication ID ``<workflow name>-<key>`` on its queue. Each debounce call
first tries to bounce it: one UPDATE pushes its delay back (never past its
debounce deadline) and gives it the call's arguments. Only while it is
DELAYED: once due, the queue worker makes it ENQUEUED and frees the key in
the same statement (``queues.PROMOTE_DUE``), so the next call starts anew.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, Callable, Dict, Optional, Tuple

from .._clock import now_ms
from .records import Bounce, BounceRequest, StepWrite
from .statements import Statement
from .steps import StepRows

_BOUNCE = """
    UPDATE {{workflow_status}} SET
        delay_until_epoch_ms = CASE
            WHEN debounce_deadline_epoch_ms IS NOT NULL AND debounce_deadline_epoch_ms < :delay_until
            THEN debounce_deadline_epoch_ms ELSE :delay_until END,
        inputs = :inputs, serialization = :serialization, application_version = :app_version,
        application_name = COALESCE(application_name, :application_name), updated_at = :now
    WHERE queue_name = :queue_name AND deduplication_id = :deduplication_id AND name = :workflow_name
        AND status = 'DELAYED' AND is_debounced {owner}
    RETURNING workflow_uuid
"""

# A bounce acts for one application: its rows and unclaimed ones (None: any row).
BOUNCE = {
    True: Statement(_BOUNCE.format(owner="AND (application_name = :application_name OR application_name IS NULL)")),
    False: Statement(_BOUNCE.format(owner="")),
}

# Whoever holds the key, whatever its kind or owner, to tell the caller why it did not bounce.
KEY_HOLDER = Statement("""
    SELECT workflow_uuid, is_debounced, name, application_name FROM {workflow_status}
    WHERE queue_name = :queue_name AND deduplication_id = :deduplication_id
""")

SET_DELAY = Statement("""
    UPDATE {workflow_status} SET delay_until_epoch_ms = :delay_until, updated_at = :now
    WHERE workflow_uuid = :workflow_id AND status = 'DELAYED'
    RETURNING queue_name
""")

# How a bounce inside a workflow checkpoints its result, in its transaction.
Encode = Callable[[Dict[str, Any]], str]


class DelayedRows(StepRows):
    def bounce_debounced(self, request: BounceRequest, step: Optional[StepWrite] = None,
                         encode: Optional[Encode] = None) -> Tuple[Bounce, Optional[str]]:
        """Push back the debounced workflow holding the key, or find the holder.

        With ``step``, the result (as ``encode`` writes it) is checkpointed in
        the same transaction. Returns the result and the workflow's status.
        """
        for attempt in self.attempts():
            with attempt:
                found = self._bounce(request)
                status = None
                if step is not None and encode is not None:
                    status = self.record_step(replace(step, output=encode(asdict(found))))
        return found, status

    def _bounce(self, request: BounceRequest) -> Bounce:
        key = {"queue_name": request.queue_name, "deduplication_id": request.deduplication_id}
        bounced = self.one(BOUNCE[request.application_name is not None], **key,
                           workflow_name=request.workflow_name, delay_until=request.delay_until_ms,
                           inputs=request.inputs, serialization=request.serialization,
                           app_version=request.app_version,
                           application_name=request.application_name, now=now_ms())
        if bounced is not None:
            return Bounce(bounced_id=bounced[0])
        holder = self.one(KEY_HOLDER, **key)
        if holder is None:
            return Bounce()
        return Bounce(holder_id=holder[0], holder_debounced=bool(holder[1]), holder_name=holder[2],
                      holder_application=holder[3])

    def set_workflow_delay(self, workflow_id: str, delay_until_ms: int) -> Optional[str]:
        """Make a DELAYED workflow due at ``delay_until_ms``; its queue, or None
        if it is not DELAYED (or does not exist): nothing changed then."""
        row = self.one(SET_DELAY, workflow_id=workflow_id, delay_until=delay_until_ms, now=now_ms())
        return None if row is None else str(row[0])
