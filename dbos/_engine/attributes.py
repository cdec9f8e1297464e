"""Workflow attributes: a JSON object of the application's own, kept in a
workflow's row (``SetWorkflowAttributes`` when it starts, ``update_workflow_attributes``
later) and matched by ``list_workflows(attributes=...)``.

Attributes belong to the workflows started in the block, not to their
children: a workflow's body runs in a context of its own (``DBOSContext.workflow_child``).
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

from ..error import DBOSInvalidArgumentError
from .context import ContextChange, DBOSContext

ATTRIBUTES_KEY = "workflow_attributes"


def attributes_text(attributes: Optional[Dict[str, Any]], argument: str = "attributes") -> Optional[str]:
    """The JSON text stored for ``attributes`` (None stays None);
    ``DBOSInvalidArgumentError`` unless it is a JSON-serializable dict."""
    if attributes is None:
        return None
    expected = "workflow attributes must be a JSON-serializable dict, or None"
    if not isinstance(attributes, dict):
        raise DBOSInvalidArgumentError(argument, attributes, expected)
    try:
        # allow_nan=False: NaN and Infinity are not JSON, and PostgreSQL's JSONB refuses them.
        return json.dumps(attributes, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DBOSInvalidArgumentError(argument, attributes, f"{expected} ({exc})") from None


class SetWorkflowAttributes(ContextChange):
    """Attach ``attributes`` to each workflow started or enqueued in this block
    (None: none). They are not inherited by those workflows' children."""

    def __init__(self, attributes: Optional[Dict[str, Any]]) -> None:
        self.text = attributes_text(attributes)
        self.attributes = attributes

    def _change(self, ctx: DBOSContext) -> None:
        ctx.extras = {**ctx.extras, ATTRIBUTES_KEY: self.text}

    def __enter__(self) -> "SetWorkflowAttributes":
        super().__enter__()
        return self


def current_attributes(ctx: DBOSContext) -> Optional[str]:
    """The JSON text of the attributes set for workflows started from ``ctx``."""
    text = ctx.extras.get(ATTRIBUTES_KEY)
    return text if isinstance(text, str) else None
