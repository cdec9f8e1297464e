"""The admin HTTP server of DBOS Transact (spec section 12): health,
deactivation, queue metadata, recovery and workflow management, and
metrics (Prometheus's ``/metrics`` and the same figures as JSON).

Paths, methods, status codes and bodies are DBOS Transact 2.31's (README,
"Over HTTP: the admin server", has the table); where DBOS Transact drops the
connection on bad input, this server answers a 4xx with ``{"error": ...}``.
Off by default; ``run_admin_server: true`` starts it at ``DBOS.launch()`` on
``admin_host:admin_port`` (127.0.0.1:3001) and ``DBOS.destroy()`` stops it.
Pages of other sites are kept out, and off loopback a token is required
(``admin_origin.py``); bodies are read by ``admin_request.py``. Every request runs
on its own daemon thread through the same management layer as
``DBOS.list_workflows()`` and friends, so the answers agree.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterator, List, Optional, Pattern, Tuple, cast
from urllib.parse import unquote, urlsplit

from .._engine.engine import Engine
from .._engine.recovery import recover_pending
from .._engine.registry import get_registry
from .._queues.queue import INTERNAL, config_from_row, work_arrived
from ..error import (
    DBOSBaseException,
    DBOSConflictingWorkflowError,
    DBOSException,
    DBOSInitializationError,
    DBOSInvalidArgumentError,
    DBOSNonExistentWorkflowError,
    DBOSNotLaunchedError,
)
from .admin_json import (
    FORK_FIELDS,
    GC_FIELDS,
    QUEUE_FILTERS,
    TIMEOUT_FIELDS,
    WORKFLOW_FILTERS,
    HTTPError,
    fields,
    filters,
    queue_json,
    step_json,
    workflow_json,
)
from .admin_origin import check_binding, check_change, check_host, check_token
from .admin_request import read_body
from .dashboard_api import ENDPOINTS, Endpoint, engine_request, serve
from .management import EngineManagement
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import exposition, figures

logger = logging.getLogger("dbos")

# A client that connects and then says nothing must not hold a thread forever.
REQUEST_TIMEOUT_S = 30.0


@dataclass
class Reply:
    status: int
    body: Any = None  # anything JSON can encode; nothing is sent with 204
    headers: Dict[str, str] = field(default_factory=dict)
    text: Optional[str] = None  # a plain-text answer in place of JSON (health, deactivation)
    content_type: Optional[str] = None  # of ``text``, if not plain text (metrics, the dashboard's files)


@dataclass(frozen=True)
class Call:
    """One routed request: the engine, the workflow ID in the path, the parsed body."""

    engine: Engine
    workflow_id: str
    body: Any
    headers: Any = None
    dashboard: bool = False  # whether this server serves the dashboard (admin_dashboard)


# ----------------------------------------------------------------------
# Endpoints
# ----------------------------------------------------------------------


def health(call: Call) -> Reply:
    return Reply(200, text="healthy")


def deactivate(call: Call) -> Reply:
    engine = call.engine
    if not engine.deactivated:  # said once, as DBOS Transact does; asking again is harmless
        identity = engine.identity
        logger.info(f"Deactivating executor {identity.executor_id} (version {identity.app_version}): "
                    "schedulers start no more workflows; queued and running workflows finish")
    engine.deactivate()
    return Reply(200, text="deactivated")


def conductor(call: Call) -> Reply:
    return Reply(200, {"status": True})


def metrics_text(call: Call) -> Reply:
    return Reply(200, text=exposition(figures(call.engine)), content_type=METRICS_CONTENT_TYPE)


def metrics_json(call: Call) -> Reply:
    return Reply(200, figures(call.engine))


def queues_metadata(call: Call) -> Reply:
    """Queues declared in code (with their limits in this process), the internal
    queue, then those only registered in the database, as DBOS Transact orders them."""
    configs = {name: queue.config() for name, queue in get_registry().queues.items()}
    configs.setdefault(INTERNAL.name, INTERNAL.config())
    for row in call.engine.sysdb.list_queues():
        configs.setdefault(row["name"], config_from_row(row))
    return Reply(200, [queue_json(name, config) for name, config in configs.items()])


def recover(call: Call) -> Reply:
    body = call.body
    if not isinstance(body, list) or not all(isinstance(e, str) for e in body):
        raise HTTPError(400, "The body of /dbos-workflow-recovery must be a JSON list of executor IDs")
    logger.info(f"Recovering the pending workflows of executor(s) {', '.join(body) or '(none)'}")
    recovered: List[str] = []
    for executor_id in dict.fromkeys(body):
        recovered += _recover_executor(call.engine, executor_id)
    return Reply(200, recovered)


def _recover_executor(engine: Engine, executor_id: str) -> List[str]:
    """Meant for executors that are gone, as in DBOS Transact; what runs in
    this process is skipped, never started a second time."""
    found = engine.sysdb.pending_workflow_queues(executor_id, engine.identity.app_version)
    running_here = set(engine.active_workflows())  # read after: catches those just started
    queue_of = {w: queue for w, queue in found.items() if w not in running_here}
    pending = list(queue_of)
    # This process's own queued work stays with its queue workers, which may
    # be starting it this very moment; requeueing is per executor, all or none.
    own = executor_id == engine.identity.executor_id
    requeued = [] if own else _requeue(engine, executor_id, queue_of)
    attempts = engine.sysdb.pending_attempts(executor_id, engine.identity.app_version)
    handles = recover_pending(engine, {w: attempts[w] for w in pending if not queue_of[w] and w in attempts})
    return requeued + [h.workflow_id for h in handles]


def _requeue(engine: Engine, executor_id: str, queue_of: Dict[str, Optional[str]]) -> List[str]:
    """Queued workflows go back to their queues, as at launch, rather than run here at once."""
    queued = [w for w, name in queue_of.items() if name]
    if queued:
        engine.sysdb.requeue_pending(executor_id, engine.identity.app_version)
    for name in {name for name in queue_of.values() if name}:
        work_arrived(name)
    return queued


def management(engine: Engine) -> EngineManagement:
    """Management of the served engine's workflows."""
    return EngineManagement(engine)


def list_workflows(call: Call) -> Reply:
    defaults = {"load_input": False, "load_output": False}
    found = filters(call.body, WORKFLOW_FILTERS, "POST /workflows", defaults)
    return Reply(200, [workflow_json(s) for s in management(call.engine).list_workflows(found)])


def list_queued(call: Call) -> Reply:
    found = filters(call.body, QUEUE_FILTERS, "POST /queues", {"load_input": False})
    return Reply(200, [workflow_json(s) for s in management(call.engine).list_queued_workflows(found)])


def get_workflow(call: Call) -> Reply:
    status = management(call.engine).get_workflow(call.workflow_id)
    if status is None:
        raise HTTPError(404, f"Workflow {call.workflow_id} does not exist")
    return Reply(200, workflow_json(status))


def list_steps(call: Call) -> Reply:
    """An unknown workflow has no steps: an empty list, as in DBOS Transact."""
    return Reply(200, [step_json(s) for s in management(call.engine).list_workflow_steps(call.workflow_id)])


def cancel(call: Call) -> Reply:
    """204 for an unknown or finished workflow too, as in DBOS Transact: nothing is left to cancel."""
    management(call.engine).cancel([call.workflow_id])
    return Reply(204)


def resume(call: Call) -> Reply:
    management(call.engine).resume([call.workflow_id])  # an unknown ID: 404
    return Reply(204)


def restart(call: Call) -> Reply:
    with _failing_as_500():
        return Reply(200, {"workflow_id": management(call.engine).fork(call.workflow_id, 1)})


def fork(call: Call) -> Reply:
    body = {} if call.body is None else call.body
    given = fields(body, FORK_FIELDS, "POST /workflows/{id}/fork", strict=True)
    with _failing_as_500():
        forked = management(call.engine).fork(
            call.workflow_id, given.get("start_step", 1), new_workflow_id=given.get("new_workflow_id"),
            application_version=given.get("application_version"))
    return Reply(200, {"workflow_id": forked})


@contextlib.contextmanager
def _failing_as_500() -> Iterator[None]:
    """A fork that DBOS refuses (an unknown workflow, an ID in use) answers 500
    with the message, as DBOS Transact's restart and fork do."""
    try:
        yield
    except DBOSException as exc:
        raise HTTPError(500, str(exc)) from None


def garbage_collect(call: Call) -> Reply:
    """Neither field given: nothing to collect (204), as in DBOS Transact."""
    given = fields(call.body, GC_FIELDS, "POST /dbos-garbage-collect", strict=True)
    management(call.engine).garbage_collect(**given)
    return Reply(204)


def global_timeout(call: Call) -> Reply:
    """No cutoff: nothing is cancelled (204), as in DBOS Transact."""
    given = fields(call.body, TIMEOUT_FIELDS, "POST /dbos-global-timeout", strict=True)
    if "cutoff_epoch_timestamp_ms" in given:
        management(call.engine).global_timeout(given["cutoff_epoch_timestamp_ms"])
    return Reply(204)


# ----------------------------------------------------------------------
# Routing
# ----------------------------------------------------------------------

Handler = Callable[[Call], Reply]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: Pattern[str]
    handler: Handler
    body: str = "none"  # "none" (ignored), "optional" or "required"
    changes: bool = True  # changes state: refused from another origin, and never run for HEAD
    bad_json: int = 400  # the status of a body that is not JSON (fork: 500, as in DBOS Transact)
    open: bool = False  # answered without the token (the health check, for load balancers)


def _route(method: str, path: str, handler: Handler, body: str = "none", *,
           changes: bool = True, bad_json: int = 400, open: bool = False) -> Route:
    return Route(method, re.compile(f"^{path}$"), handler, body, changes, bad_json, open)


def on_engine(endpoint: Endpoint) -> Handler:
    """A dashboard endpoint on the served engine; 404 unless ``admin_dashboard`` is on."""
    def handler(call: Call) -> Reply:
        if not call.dashboard:
            raise HTTPError(404, "The dashboard is off on this admin server: set admin_dashboard: true")
        answer = serve(endpoint, engine_request(call.engine, call.workflow_id, call.body, call.headers))
        return Reply(answer.status, answer.body, answer.headers, answer.text, answer.content_type)
    return handler


_ID = "/workflows/(?P<id>[^/]+)"
ROUTES = (
    _route("GET", "/dbos-healthz", health, changes=False, open=True),
    _route("GET", "/deactivate", deactivate),  # a GET that changes state: DBOS Transact's path and method
    _route("POST", "/deactivate", deactivate),  # its twin, for browsers
    _route("GET", "/metrics", metrics_text, changes=False),
    _route("GET", "/dbos-metrics.json", metrics_json, changes=False),
    _route("GET", "/conductor", conductor, changes=False),
    _route("GET", "/dbos-workflow-queues-metadata", queues_metadata, changes=False),
    _route("POST", "/dbos-workflow-recovery", recover, "required"),
    _route("POST", "/dbos-garbage-collect", garbage_collect, "required"),
    _route("POST", "/dbos-global-timeout", global_timeout, "required"),
    _route("POST", "/workflows", list_workflows, "optional", changes=False),
    _route("POST", "/queues", list_queued, "optional", changes=False),
    _route("GET", _ID, get_workflow, changes=False),
    _route("GET", f"{_ID}/steps", list_steps, changes=False),
    _route("POST", f"{_ID}/cancel", cancel),
    _route("POST", f"{_ID}/resume", resume),
    _route("POST", f"{_ID}/restart", restart),
    _route("POST", f"{_ID}/fork", fork, "optional", bad_json=500),
    *(_route(e.method, e.path, on_engine(e), e.body, changes=e.changes, open=e.is_page) for e in ENDPOINTS),
)


def find_route(method: str, path: str) -> Tuple[Route, str]:
    """The route and the (decoded) workflow ID in the path; 404 or 405 if none.
    HEAD is a GET that sends no body, for the routes that change nothing."""
    matches = [(r, m) for r in ROUTES if (m := r.pattern.match(path))]
    if not matches:
        raise HTTPError(404, f"No such endpoint: {path}")
    for route, match in matches:
        if route.method == method or (method == "HEAD" and route.method == "GET" and not route.changes):
            return route, unquote(match.groupdict().get("id") or "")
    allowed = ", ".join(sorted({r.method for r, _ in matches}))
    raise HTTPError(405, f"{method} is not allowed on {path}; use {allowed}", {"Allow": allowed})


def error_reply(exc: BaseException) -> Reply:
    """The JSON answer to a failure; the stack trace goes to the log only."""
    if isinstance(exc, HTTPError):
        return Reply(exc.status, {"error": exc.message}, exc.headers)
    if isinstance(exc, DBOSNonExistentWorkflowError):
        return Reply(404, {"error": str(exc)})
    if isinstance(exc, DBOSConflictingWorkflowError):
        return Reply(409, {"error": str(exc)})
    if isinstance(exc, DBOSNotLaunchedError):
        return Reply(503, {"error": str(exc)})
    if isinstance(exc, DBOSInvalidArgumentError):
        return Reply(400, {"error": str(exc)})
    if isinstance(exc, RecursionError):  # a body nested deeper than Python can walk
        return Reply(400, {"error": "The request body is nested too deeply"})
    logger.error("The admin server failed to answer a request", exc_info=exc)
    return Reply(500, {"error": str(exc) or type(exc).__name__})


# ----------------------------------------------------------------------
# The server
# ----------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # DBOS.destroy() never waits on a slow client
    request_queue_size = 128  # the listen backlog: a burst of connections waits rather than being refused

    def __init__(self, host: str, port: int, engine: Engine, token: Optional[str], dashboard: bool = False) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.engine = engine
        self.dashboard = dashboard
        self.host = host
        self.token = token
        super().__init__((host, port), AdminRequestHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Only a connection lost mid-answer gets here (handlers catch the rest);
        # socketserver would print its stack trace on stderr.
        logger.debug(f"The admin server lost the connection to {client_address}", exc_info=True)


class AdminRequestHandler(BaseHTTPRequestHandler):
    timeout = REQUEST_TIMEOUT_S

    def do_GET(self) -> None:
        self._answer()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _answer(self) -> None:
        try:
            reply = self._dispatch()
        except (Exception, DBOSBaseException) as exc:
            reply = error_reply(exc)
        self._send(reply)

    def _dispatch(self) -> Reply:
        server = cast(_Server, self.server)
        check_host(self.headers, server.host)
        route, workflow_id = find_route(self.command, urlsplit(self.path).path)
        if not route.open:
            check_token(self.headers, server.token)
        if route.changes:
            check_change(self.headers, self.command)
        body = read_body(self, route.body, route.bad_json)
        return route.handler(Call(server.engine, workflow_id, body, self.headers, server.dashboard))

    def _send(self, reply: Reply) -> None:
        data, kind = _encoded(reply)
        self.send_response(reply.status)
        self.send_header("Content-Type", kind)
        if reply.status != 204:
            self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if data and getattr(self, "command", None) != "HEAD":
            with contextlib.suppress(OSError):  # the client hung up; nothing to tell it
                self.wfile.write(data)

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        # Failures found by http.server itself (bad request line, unknown
        # method, header too long) are JSON too, never its HTML page.
        self.close_connection = True
        phrase = self.responses.get(code, ("Error",))[0]
        self._send(Reply(code, {"error": message or phrase}))

    def log_message(self, format: str, *args: Any) -> None:
        pass  # request logging is off, as in DBOS Transact


def _encoded(reply: Reply) -> Tuple[bytes, str]:
    """The bytes of an answer and their Content-Type."""
    if reply.text is not None:
        return reply.text.encode(), reply.content_type or "text/plain; charset=utf-8"
    return (b"" if reply.status == 204 else json.dumps(reply.body, default=str).encode()), "application/json"


class AdminServer:
    """The admin server of one launched engine, listening until ``stop``."""

    def __init__(self, engine: Engine, host: str, port: int, token: Optional[str] = None,
                 dashboard: bool = False) -> None:
        check_binding(host, token)
        try:
            self._server = _Server(host, port, engine, token, dashboard)
        except OSError as exc:
            raise DBOSInitializationError(
                f"The admin server cannot listen on {host}:{port} ({exc.strerror or exc}): "
                "free that port, choose another with admin_port (or admin_host), "
                "or set run_admin_server to false"
            ) from None
        # A short poll interval: stop() (so DBOS.destroy()) waits at most that long.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name="dbos-admin-server", daemon=True
        )
        self._thread.start()
        logger.info(f"Admin server listening on http://{_url_host(host)}:{self.port}")

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
