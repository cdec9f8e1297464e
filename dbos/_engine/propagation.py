"""``PropagateOtelContext``: the workflows started in a block continue a trace.

The carrier (W3C ``traceparent``/``tracestate``) is made by the OpenTelemetry
glue, imported only when the context manager is used, and left in the DBOS
context for ``launch.prepare`` to store in each workflow's attributes.
"""

from __future__ import annotations

from typing import Any, Optional

from .context import ContextChange, DBOSContext
from .tracing import CARRIER_EXTRA


class PropagateOtelContext(ContextChange):
    """Continue the current trace (or ``context``'s) in every workflow started
    or enqueued in this block, wherever and whenever it runs: its W3C trace
    context is stored in the workflow's attributes under ``dbos.otelContext``.
    Not inherited by those workflows' children. Needs the ``otel`` extra."""

    def __init__(self, context: Optional[Any] = None) -> None:
        from ..contrib.otel import inject, require  # OpenTelemetry only when asked for

        require("PropagateOtelContext")
        self.context = context
        self._inject = inject

    def _change(self, ctx: DBOSContext) -> None:
        carrier = self._inject(self.context)
        ctx.extras = {**ctx.extras, CARRIER_EXTRA: carrier or None}

    def __enter__(self) -> "PropagateOtelContext":
        super().__enter__()
        return self
