"""The admin HTTP server of DBOS Transact (spec section 12): health,
deactivation, queue metadata, recovery and workflow management, as JSON.

Off by default; ``run_admin_server: true`` starts it at ``DBOS.launch()`` on
``admin_host:admin_port`` (127.0.0.1:3001) and ``DBOS.destroy()`` stops it.
Every request runs on its own daemon thread through the same management
layer as ``DBOS.list_workflows()`` and friends, so the answers agree.
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
from typing import Any, Callable, Dict, List, Optional, Pattern, Tuple, Union, cast
from urllib.parse import unquote, urlsplit

from .._engine.engine import Engine
from .._engine.recovery import recover_pending
from .._engine.registry import get_registry
from .._queues.queue import QueueConfig, config_from_row, work_arrived
from .._status import WorkflowStatus
from ..error import (
    DBOSBaseException,
    DBOSConflictingWorkflowError,
    DBOSException,
    DBOSInitializationError,
    DBOSNonExistentWorkflowError,
    DBOSNotLaunchedError,
)
from .filters import build_query
from .management import EngineManagement, StepInfo

logger = logging.getLogger("dbos")

MAX_BODY_BYTES = 10 * 1024 * 1024
# A client that connects and then says nothing must not hold a thread forever.
REQUEST_TIMEOUT_S = 30.0


class HTTPError(Exception):
    """A request refused with ``status``; ``message`` is what the client reads."""

    def __init__(self, status: int, message: str, headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class Reply:
    status: int
    body: Any = None  # anything JSON can encode; nothing is sent with 204
    headers: Dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    """One routed request: the engine, the workflow ID in the path, the parsed body."""

    engine: Engine
    workflow_id: str
    body: Any


# ----------------------------------------------------------------------
# Request bodies
# ----------------------------------------------------------------------

Check = Callable[[Any, str], Any]
Field = Tuple[str, Check]  # (keyword of the management call, value check)


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise HTTPError(400, f"'{key}' must be a string, got {json.dumps(value)}")
    return value


def _name(value: Any, key: str) -> str:
    if not _text(value, key).strip():
        raise HTTPError(400, f"'{key}' must not be empty")
    return str(value)


def _texts(value: Any, key: str) -> Union[str, List[str]]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    if isinstance(value, str):
        return value
    raise HTTPError(400, f"'{key}' must be a string or a list of strings, got {json.dumps(value)}")


def _count(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise HTTPError(400, f"'{key}' must be a non-negative integer, got {json.dumps(value)}")
    return value


def _step(value: Any, key: str) -> int:
    if _count(value, key) < 1:
        raise HTTPError(400, f"'{key}' must be an integer of 1 or more, got {value}")
    return int(value)


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise HTTPError(400, f"'{key}' must be true or false, got {json.dumps(value)}")
    return value


def _fields(body: Any, spec: Dict[str, Field], what: str) -> Dict[str, Any]:
    """A JSON object's fields, checked and renamed; null means "not given"."""
    if not isinstance(body, dict):
        raise HTTPError(400, f"The body of {what} must be a JSON object")
    unknown = sorted(set(body) - set(spec))
    if unknown:
        raise HTTPError(400, f"{what} got unknown field(s) {', '.join(unknown)}; "
                             f"valid fields are {', '.join(sorted(spec))}")
    return {spec[k][0]: spec[k][1](v, k) for k, v in body.items() if v is not None}


_COMMON_FILTERS: Dict[str, Field] = {
    "start_time": ("start_time", _text),
    "end_time": ("end_time", _text),
    "status": ("status", _texts),
    "forked_from": ("forked_from", _texts),
    "parent_workflow_id": ("parent_workflow_id", _texts),
    "workflow_name": ("name", _texts),
    "limit": ("limit", _count),
    "offset": ("offset", _count),
    "sort_desc": ("sort_desc", _flag),
    "load_input": ("load_input", _flag),
}
WORKFLOW_FILTERS: Dict[str, Field] = {
    **_COMMON_FILTERS,
    "workflow_uuids": ("workflow_ids", _texts),
    "authenticated_user": ("user", _texts),
    "application_version": ("app_version", _texts),
    "workflow_id_prefix": ("workflow_id_prefix", _texts),
    "load_output": ("load_output", _flag),
}
QUEUE_FILTERS: Dict[str, Field] = {**_COMMON_FILTERS, "queue_name": ("queue_name", _texts)}
FORK_FIELDS: Dict[str, Field] = {
    "start_step": ("start_step", _step),
    "new_workflow_id": ("new_workflow_id", _name),
    "application_version": ("application_version", _text),
}
GC_FIELDS: Dict[str, Field] = {
    "cutoff_epoch_timestamp_ms": ("cutoff_epoch_timestamp_ms", _count),
    "rows_threshold": ("rows_threshold", _count),
}
TIMEOUT_FIELDS: Dict[str, Field] = {"cutoff_epoch_timestamp_ms": ("cutoff_epoch_timestamp_ms", _count)}


def _filters(body: Any, spec: Dict[str, Field], what: str, defaults: Dict[str, Any]) -> Dict[str, Any]:
    filters = {**defaults, **_fields({} if body is None else body, spec, what)}
    try:
        build_query(None, filters)  # statuses and times are checked here, before any query runs
    except DBOSException as exc:
        raise HTTPError(400, exc.message) from None
    return filters


# ----------------------------------------------------------------------
# Responses
# ----------------------------------------------------------------------

_WORKFLOW_KEYS = (
    ("WorkflowUUID", "workflow_id"), ("Status", "status"), ("WorkflowName", "name"),
    ("WorkflowClassName", "class_name"), ("WorkflowConfigName", "config_name"),
    ("AuthenticatedUser", "authenticated_user"), ("AssumedRole", "assumed_role"),
    ("Input", "input"), ("Output", "output"), ("Error", "error"),
    ("CreatedAt", "created_at"), ("UpdatedAt", "updated_at"), ("QueueName", "queue_name"),
    ("ApplicationVersion", "app_version"), ("ExecutorID", "executor_id"),
    ("WorkflowTimeoutMS", "workflow_timeout_ms"),
    ("WorkflowDeadlineEpochMS", "workflow_deadline_epoch_ms"),
    ("DeduplicationID", "deduplication_id"), ("Priority", "priority"),
    ("QueuePartitionKey", "queue_partition_key"), ("ForkedFrom", "forked_from"),
    ("ParentWorkflowID", "parent_workflow_id"), ("DequeuedAt", "dequeued_at"),
    ("DelayUntilEpochMS", "delay_until_epoch_ms"), ("CompletedAt", "completed_at"),
    ("ScheduleName", "schedule_name"), ("ApplicationName", "application_name"),
)


def _str(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def _json_str(value: Any) -> Optional[str]:
    return None if value is None else json.dumps(value, default=str)


def workflow_json(status: WorkflowStatus) -> Dict[str, Any]:
    """DBOS Transact's workflow record: PascalCase keys, values as strings."""
    out: Dict[str, Any] = {key: _str(getattr(status, attr)) for key, attr in _WORKFLOW_KEYS}
    out["AuthenticatedRoles"] = _json_str(status.authenticated_roles)
    out["Attributes"] = _json_str(status.attributes)
    out["WasForkedFrom"] = bool(status.was_forked_from)
    return out


def step_json(step: StepInfo) -> Dict[str, Any]:
    out: Dict[str, Any] = dict(step)
    out["output"] = _str(step["output"])
    out["error"] = _str(step["error"])
    return out


def queue_json(name: str, config: QueueConfig) -> Dict[str, Any]:
    fields: Dict[str, Any] = {
        "name": name,
        "concurrency": config.concurrency,
        "workerConcurrency": config.worker_concurrency,
        "rateLimit": dict(config.limiter) if config.limiter else None,
        "priorityEnabled": config.priority_enabled,
        "partitionQueue": config.partition_queue,
    }
    return {k: v for k, v in fields.items() if v is not None}


# ----------------------------------------------------------------------
# Endpoints
# ----------------------------------------------------------------------


def health(call: Call) -> Reply:
    return Reply(200, {"status": "healthy"})


def deactivate(call: Call) -> Reply:
    identity = call.engine.identity
    logger.info(f"Deactivating executor {identity.executor_id} (version {identity.app_version}): "
                "running workflows finish, schedulers and queue workers start no more")
    call.engine.stop_intake()
    return Reply(200, {"status": "deactivated"})


def queues_metadata(call: Call) -> Reply:
    configs = {row["name"]: config_from_row(row) for row in call.engine.sysdb.list_queues()}
    # A queue declared in code runs with its declared limits in this process.
    configs.update({name: queue.config() for name, queue in get_registry().queues.items()})
    return Reply(200, [queue_json(name, configs[name]) for name in sorted(configs)])


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
    handles = recover_pending(engine, [w for w in pending if not queue_of[w]])
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
    filters = _filters(call.body, WORKFLOW_FILTERS, "POST /workflows", defaults)
    return Reply(200, [workflow_json(s) for s in management(call.engine).list_workflows(filters)])


def list_queued(call: Call) -> Reply:
    filters = _filters(call.body, QUEUE_FILTERS, "POST /queues", {"load_input": False})
    return Reply(200, [workflow_json(s) for s in management(call.engine).list_queued_workflows(filters)])


def get_workflow(call: Call) -> Reply:
    status = management(call.engine).get_workflow(call.workflow_id)
    if status is None:
        raise _missing(call.workflow_id)
    return Reply(200, workflow_json(status))


def list_steps(call: Call) -> Reply:
    _require(call)
    return Reply(200, [step_json(s) for s in management(call.engine).list_workflow_steps(call.workflow_id)])


def cancel(call: Call) -> Reply:
    _require(call)
    management(call.engine).cancel([call.workflow_id])
    return Reply(204)


def resume(call: Call) -> Reply:
    _require(call)
    management(call.engine).resume([call.workflow_id])
    return Reply(204)


def restart(call: Call) -> Reply:
    return Reply(200, {"workflow_id": management(call.engine).fork(call.workflow_id, 1)})


def fork(call: Call) -> Reply:
    fields = _fields({} if call.body is None else call.body, FORK_FIELDS, "POST /workflows/{id}/fork")
    forked = management(call.engine).fork(
        call.workflow_id, fields.get("start_step", 1), new_workflow_id=fields.get("new_workflow_id"),
        application_version=fields.get("application_version"))
    return Reply(200, {"workflow_id": forked})


def garbage_collect(call: Call) -> Reply:
    fields = _fields(call.body, GC_FIELDS, "POST /dbos-garbage-collect")
    if not fields:
        raise HTTPError(400, "POST /dbos-garbage-collect needs cutoff_epoch_timestamp_ms or rows_threshold")
    management(call.engine).garbage_collect(**fields)
    return Reply(204)


def global_timeout(call: Call) -> Reply:
    fields = _fields(call.body, TIMEOUT_FIELDS, "POST /dbos-global-timeout")
    if "cutoff_epoch_timestamp_ms" not in fields:
        raise HTTPError(400, "POST /dbos-global-timeout needs cutoff_epoch_timestamp_ms")
    management(call.engine).global_timeout(fields["cutoff_epoch_timestamp_ms"])
    return Reply(204)


def _missing(workflow_id: str) -> HTTPError:
    return HTTPError(404, f"Workflow {workflow_id} does not exist")


def _require(call: Call) -> None:
    if call.engine.sysdb.workflow_row(call.workflow_id) is None:
        raise _missing(call.workflow_id)


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


def _route(method: str, path: str, handler: Handler, body: str = "none") -> Route:
    return Route(method, re.compile(f"^{path}$"), handler, body)


_ID = "/workflows/(?P<id>[^/]+)"
ROUTES = (
    _route("GET", "/dbos-healthz", health),
    _route("GET", "/deactivate", deactivate),
    _route("GET", "/dbos-workflow-queues-metadata", queues_metadata),
    _route("POST", "/dbos-workflow-recovery", recover, "required"),
    _route("POST", "/dbos-garbage-collect", garbage_collect, "required"),
    _route("POST", "/dbos-global-timeout", global_timeout, "required"),
    _route("POST", "/workflows", list_workflows, "optional"),
    _route("POST", "/queues", list_queued, "optional"),
    _route("GET", _ID, get_workflow),
    _route("GET", f"{_ID}/steps", list_steps),
    _route("POST", f"{_ID}/cancel", cancel),
    _route("POST", f"{_ID}/resume", resume),
    _route("POST", f"{_ID}/restart", restart),
    _route("POST", f"{_ID}/fork", fork, "optional"),
)


def find_route(method: str, path: str) -> Tuple[Route, str]:
    """The route and the (decoded) workflow ID in the path; 404 or 405 if none."""
    matches = [(r, m) for r in ROUTES if (m := r.pattern.match(path))]
    if not matches:
        raise HTTPError(404, f"No such endpoint: {path}")
    for route, match in matches:
        if route.method == method:
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
    logger.error("The admin server failed to answer a request", exc_info=exc)
    return Reply(500, {"error": str(exc) or type(exc).__name__})


# ----------------------------------------------------------------------
# The server
# ----------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # DBOS.destroy() never waits on a slow client

    def __init__(self, host: str, port: int, engine: Engine) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.engine = engine
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
        route, workflow_id = find_route(self.command, urlsplit(self.path).path)
        body = self._body(route.body)
        return route.handler(Call(cast(_Server, self.server).engine, workflow_id, body))

    def _body(self, mode: str) -> Any:
        if mode == "none":
            return None
        length = self.headers.get("Content-Length")
        if length is None:
            # A chunked body would otherwise be taken for no body, its filters ignored.
            if mode == "required" or "Transfer-Encoding" in self.headers:
                raise HTTPError(411, f"{self.command} {self.path} needs a Content-Length header "
                                     "(chunked bodies are not supported)")
            return None
        raw = self.rfile.read(_length(length))
        if not raw.strip():
            if mode == "required":
                raise HTTPError(400, f"{self.command} {self.path} needs a JSON body; it was empty")
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise HTTPError(400, f"The request body is not valid JSON: {exc}") from None

    def _send(self, reply: Reply) -> None:
        data = b"" if reply.status == 204 else json.dumps(reply.body, default=str).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
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


def _length(header: str) -> int:
    try:
        size = int(header)
    except ValueError:
        raise HTTPError(400, f"Content-Length must be an integer, got {header!r}") from None
    if size < 0:
        raise HTTPError(400, f"Content-Length must not be negative, got {size}")
    if size > MAX_BODY_BYTES:
        raise HTTPError(413, f"The request body is larger than {MAX_BODY_BYTES} bytes")
    return size


class AdminServer:
    """The admin server of one launched engine, listening until ``stop``."""

    def __init__(self, engine: Engine, host: str, port: int) -> None:
        try:
            self._server = _Server(host, port, engine)
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
