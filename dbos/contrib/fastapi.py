"""FastAPI integration: ``DBOS(config=..., fastapi=app)`` (spec section 14.1).

It adds three things to the app:

- a lifespan wrapper: once the app's own lifespan has started, DBOS launches
  (unless the app launched it already, e.g. in that lifespan); once the app's
  lifespan has finished shutting down, DBOS is destroyed;
- an exception handler turning a ``DBOSException`` into JSON
  ``{"message", "dbos_error_code", "dbos_error"}`` with the exception's
  ``status_code`` (403 for ``DBOSNotAuthorizedError``) or 500;
- an ASGI middleware running each HTTP request in a DBOS context that knows
  the request ID and applies ``dbos-idempotency-key`` to the first workflow
  the handler starts.

FastAPI and Starlette are imported only when used: the core never needs them.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Dict, Optional

from .. import _runtime as runtime
from ..error import DBOSException
from ._http import (
    IDEMPOTENCY_KEY_HEADER,
    REQUEST_ID_HEADER,
    RequestInfo,
    current_request,
    handler_context,
    request_id_from,
    require_app,
)

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["DBOSASGIMiddleware", "RequestInfo", "current_request", "setup_fastapi"]


def setup_fastapi(app: Any) -> None:
    """What ``DBOS(config=..., fastapi=app)`` does to ``app``."""
    require_app(app, "fastapi", "FastAPI", "fastapi")
    if getattr(app.state, "dbos_installed", False):
        return  # a second DBOS after destroy() finds the app wired already
    _wrap_lifespan(app)
    app.add_exception_handler(DBOSException, dbos_exception_handler)
    app.add_middleware(DBOSASGIMiddleware)
    app.state.dbos_installed = True


# ----------------------------------------------------------------------
# Lifespan
# ----------------------------------------------------------------------


def _wrap_lifespan(app: "FastAPI") -> None:
    # The router's lifespan_context is what Starlette enters at startup; it
    # holds the app's lifespan= (or its on_startup/on_shutdown handlers), so
    # wrapping it keeps them running. Routers included later are merged
    # inside this wrapper, so they start after DBOS launches.
    router = app.router
    router.lifespan_context = _dbos_lifespan(router.lifespan_context)


def _dbos_lifespan(inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Optional[Dict[str, Any]]]:
        try:
            async with inner(app) as state:
                # After the app's own startup, as DBOS Transact does on
                # lifespan.startup.complete; a launch there is left alone.
                runtime.launch_if_needed()
                yield state
        finally:
            # After the app's own shutdown, which may still use DBOS.
            runtime.destroy()

    return lifespan


# ----------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------


async def dbos_exception_handler(request: "Request", exc: Exception) -> "Response":
    from starlette.responses import JSONResponse

    assert isinstance(exc, DBOSException)  # registered for DBOSException only
    code = exc.dbos_error_code
    return JSONResponse(
        status_code=exc.status_code or 500,
        content={
            "message": str(exc.message),
            # The number as text ("8"), as DBOS Transact sends it; an IntEnum's
            # str() is its name on Python 3.10. "None" when there is no code.
            "dbos_error_code": str(int(code)) if code is not None else "None",
            "dbos_error": type(exc).__name__,
        },
    )


# ----------------------------------------------------------------------
# Requests
# ----------------------------------------------------------------------


class DBOSASGIMiddleware:
    """Runs each HTTP request in a DBOS context.

    Plain ASGI rather than ``@app.middleware("http")``: the endpoint then runs
    in this very task, so the context reaches it (and, copied, the thread a
    sync endpoint runs in) without Starlette's extra task in between.
    """

    def __init__(self, app: "ASGIApp") -> None:
        self.app = app

    async def __call__(self, scope: "Scope", receive: "Receive", send: "Send") -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.datastructures import URL, Headers

        headers = Headers(scope=scope)
        client = scope.get("client")
        info = RequestInfo(
            request_id=request_id_from(headers.get(REQUEST_ID_HEADER)),
            method=str(scope.get("method", "")),
            url=str(URL(scope=scope)),
            ip=client[0] if client else None,
        )
        with handler_context(info, headers.get(IDEMPOTENCY_KEY_HEADER)):
            await self.app(scope, receive, send)
