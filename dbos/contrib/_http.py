"""What the Flask and FastAPI integrations share: one DBOS context per request.

Spec section 14.5: only two headers mean anything to DBOS. ``x-request-id``
names the request (a new UUID when it is missing), and a non-empty
``dbos-idempotency-key`` becomes the ID of the first workflow the handler
starts, as if the handler had run inside ``SetWorkflowID(key)``.

The request's details live in the handler's context (``DBOSContext.extras``)
and are read with ``current_request()``. They are not copied into the
workflows the handler starts (spec 14 records them on the handler's span
only, and a recovered workflow has no request): a workflow that needs the
request ID takes it as an argument, so it is recorded with its inputs.
"""

from __future__ import annotations

import importlib
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Iterator, Optional

from .._engine.context import DBOSContext, get_context, reset_context, set_context
from ..error import DBOSInitializationError

REQUEST_ID_HEADER = "x-request-id"
IDEMPOTENCY_KEY_HEADER = "dbos-idempotency-key"
# The key of ``RequestInfo`` in ``DBOSContext.extras``.
REQUEST_KEY = "dbos.request"


@dataclass(frozen=True)
class RequestInfo:
    """The HTTP request a handler is serving (the span attributes of spec 14.1)."""

    request_id: str
    method: str
    url: str
    ip: Optional[str]


def current_request() -> Optional[RequestInfo]:
    """The request whose handler is running here, or None outside a handler
    (and inside the workflows and steps it starts, which run in contexts of
    their own)."""
    ctx = get_context()
    info = ctx.extras.get(REQUEST_KEY) if ctx is not None else None
    return info if isinstance(info, RequestInfo) else None


def request_id_from(header: Optional[str]) -> str:
    return header if header else str(uuid.uuid4())


@contextmanager
def handler_context(info: RequestInfo, idempotency_key: Optional[str]) -> Iterator[DBOSContext]:
    """Run the block in a DBOS context that knows the request.

    The context is a copy of the caller's (there is usually none), so
    authentication set around a test client still applies; the original is
    restored on exit.
    """
    current = get_context()
    ctx = replace(current) if current is not None else DBOSContext()
    # A new dict: the copy above shares the caller's.
    ctx.extras = {**ctx.extras, REQUEST_KEY: info}
    # Blank means absent: SetWorkflowID would reject it, and a client that
    # sends an empty header did not ask for an ID.
    if idempotency_key and idempotency_key.strip():
        ctx.next_workflow_id = idempotency_key
    token = set_context(ctx)
    try:
        yield ctx
    finally:
        reset_context(token)


def require_app(app: Any, package: str, class_name: str, option: str) -> None:
    """Refuse an ``option=`` that is not an application of that framework."""
    try:
        framework = importlib.import_module(package)
    except ImportError:
        raise DBOSInitializationError(
            f"{option}= needs the {package} package: pip install {package}"
        ) from None
    if not isinstance(app, getattr(framework, class_name)):
        raise DBOSInitializationError(
            f"{option}= must be a {package}.{class_name} application, got {type(app).__name__}"
        )

