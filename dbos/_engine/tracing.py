"""The engine's one hook for tracing: spans around workflows, steps and transactions.

The engine knows nothing of OpenTelemetry. ``dbos.contrib.otel`` installs a
``Tracer`` here when ``enable_otlp`` is set; until then ``installed`` is None
and each traced call costs one global read and a shared no-op context manager.

A trace crosses a thread or a process through a carrier (the W3C
``traceparent``/``tracestate`` pair) kept in the workflow's attributes under
``dbos.otelContext``, as DBOS Transact keeps it: a queue worker or a recovery
reads it back and the workflow's span joins the trace that started it.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from typing import Any, ContextManager, Dict, Optional, Protocol

from .context import DBOSContext

# The workflow attribute holding the carrier (DBOS Transact's key).
CARRIER_ATTRIBUTE = "dbos.otelContext"
# Where PropagateOtelContext leaves the carrier in the DBOS context.
CARRIER_EXTRA = "otel_carrier"


class Traced(Protocol):
    """An open span, as the engine sees it."""

    def failed(self, error: BaseException) -> None:
        """Mark the span ERROR with ``error`` (one the body's caller gets, not one raised through it)."""

    def attempt_failed(self, attempt: int, error: BaseException, retry_in: float) -> None:
        """One attempt of a retried step failed; another follows after ``retry_in`` seconds."""


class Tracer(Protocol):
    """What the engine asks of a tracing backend."""

    def span(self, name: str, kind: str, workflow_id: str, caller: Optional[DBOSContext], identity: Any,
             parent: Any = None, queue_name: Optional[str] = None) -> ContextManager[Traced]:
        """A span for one workflow, step or transaction (``kind``), current while open;
        its parent is ``parent`` (a trace context) or else the current span."""

    def carrier(self) -> Optional[Dict[str, str]]:
        """The current span's carrier; None when no span is recording."""

    def parent_from(self, carrier: Dict[str, Any]) -> Any:
        """The trace context a stored carrier names; None if it names none."""


installed: Optional[Tracer] = None
_NOTHING: ContextManager[None] = nullcontext()


def install(tracer: Optional[Tracer]) -> None:
    """Trace from now on with ``tracer`` (None: stop tracing)."""
    global installed
    installed = tracer


def span(name: str, kind: str, workflow_id: str, caller: Optional[DBOSContext], identity: Any,
         parent: Any = None, queue_name: Optional[str] = None) -> ContextManager[Optional[Traced]]:
    """The tracer's span, or a shared no-op when nothing traces."""
    tracer = installed
    if tracer is None:
        return _NOTHING
    return tracer.span(name, kind, workflow_id, caller, identity, parent, queue_name)


def parent_from(carrier: Dict[str, Any]) -> Any:
    """The trace context ``carrier`` names, when tracing (to run a body elsewhere in it)."""
    tracer = installed
    return None if tracer is None else tracer.parent_from(carrier)


def carrier_for(caller: DBOSContext, direct: bool) -> Optional[Dict[str, str]]:
    """The carrier to store with a workflow started from ``caller``: the one
    ``PropagateOtelContext`` set, else, when tracing, the current span's for a
    workflow that runs elsewhere (started or enqueued, not called)."""
    given = caller.extras.get(CARRIER_EXTRA)
    if given is not None:
        return dict(given)
    tracer = installed
    if tracer is None or direct:
        return None
    return tracer.carrier()


def with_carrier(attributes: Optional[str], carrier: Dict[str, str]) -> str:
    """The attributes' JSON text with the carrier added under ``dbos.otelContext``."""
    loaded = json.loads(attributes) if attributes else {}
    merged = loaded if isinstance(loaded, dict) else {}
    merged[CARRIER_ATTRIBUTE] = carrier
    return json.dumps(merged)


def parent_of(attributes: Any) -> Any:
    """The trace context a stored workflow's attributes carry, when tracing; None otherwise.

    Never raises: attributes are the application's to write, and a bad
    carrier must not keep a workflow from running.
    """
    tracer = installed
    if tracer is None or not attributes:
        return None
    try:
        loaded = json.loads(attributes) if isinstance(attributes, str) else attributes
    except ValueError:
        return None
    carrier = loaded.get(CARRIER_ATTRIBUTE) if isinstance(loaded, dict) else None
    return parent_from(carrier) if isinstance(carrier, dict) else None
