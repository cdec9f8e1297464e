"""The dashboard: its page and the JSON API the page calls, under ``/dashboard``.

The same endpoints serve the admin server of a launched application (with
``admin_dashboard: true``) and ``dbos dashboard``, which opens a system
database with no application running (``dashboard_server.py``). Each works
on a ``Management`` and a ``Schedules``, so it acts as the command line and
``DBOSClient`` do.

A change of state is a POST with a JSON body and the header
``X-DBOS-Request: 1``: a page of another origin cannot add that header
without the browser first asking permission (which is never given), and the
servers also refuse such pages by their ``Origin``/``Sec-Fetch-Site``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message
from importlib import resources
from typing import Any, Callable, Dict, List, Optional

from .._clock import now_ms
from .._engine.engine import Engine
from .._engine.registry import get_registry
from .._queues.limits import QueueConfig
from .._queues.schedule_runner import schedules_changed
from .._queues.schedules import Schedules
from .admin_json import HTTPError
from .dashboard_json import (
    BULK_MAX,
    PAGE_MAX,
    as_object,
    count_field,
    cursor,
    epoch_time,
    list_filters,
    shown,
    step_record,
    stored_value,
    text_field,
    workflow_detail,
    workflow_summary,
)
from .management import EngineManagement, Management

PREFIX = "/dashboard"
REQUEST_HEADER = "X-DBOS-Request"
# Rows of a workflow's messages, streams and descendants shown at most.
DETAIL_MAX = 500
# The page runs only its own files, and no other site may frame it (a framed
# page's clicks would be same-origin requests, past the origin checks).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
           "style.css": "text/css; charset=utf-8"}


@dataclass(frozen=True)
class Request:
    """One call of the API: what it works on, the ID or name in its path, its body."""

    management: Management
    schedules: Schedules
    item: str
    body: Any
    headers: Message
    # The limits of queues declared in this process's code (the admin server's); not in the database.
    declared: Dict[str, QueueConfig] = field(default_factory=dict)


@dataclass
class Answer:
    status: int
    body: Any = None
    text: Optional[str] = None  # a static file, with its content type
    content_type: Optional[str] = None
    headers: Dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # a regular expression; (?P<id>...) is the item
    handler: Callable[[Request], Answer]
    changes: bool = False

    @property
    def is_page(self) -> bool:
        """The page and its files: no data in them, so served without the admin token
        (the page then sends the token with its API calls)."""
        return not self.path.startswith(_API)

    @property
    def body(self) -> str:
        """Whether a body is read: a change needs one, a listing may have one."""
        return "required" if self.changes else ("optional" if self.method == "POST" else "none")


def engine_request(engine: Engine, item: str, body: Any, headers: Message) -> Request:
    """A call on a launched engine's admin server: managed as its application."""
    schedules = Schedules(engine.sysdb, engine.codec, engine.identity.app_name, schedules_changed)
    declared = {name: queue.config() for name, queue in get_registry().queues.items()}
    return Request(EngineManagement(engine), schedules, item, body, headers, declared)


def require_request_header(headers: Message) -> None:
    """A change must carry the header only the dashboard's own page sends."""
    if (headers.get(REQUEST_HEADER) or "").strip() != "1":
        raise HTTPError(403, f"Refused: a dashboard change needs the header {REQUEST_HEADER}: 1")


def serve(endpoint: Endpoint, request: Request) -> Answer:
    """Run an endpoint, with the checks every change gets first."""
    if endpoint.changes:
        require_request_header(request.headers)
    return endpoint.handler(request)


# ----------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------


def to_page(request: Request) -> Answer:
    """The page's files are relative to ``/dashboard/``: send the browser there."""
    return Answer(308, {"location": f"{PREFIX}/"}, headers={"Location": f"{PREFIX}/"})


def static_file(request: Request) -> Answer:
    name = request.item or "index.html"
    if name not in _STATIC:
        raise HTTPError(404, f"No such dashboard file: {name}")
    text = resources.files("dbos").joinpath(f"_static/dashboard/{name}").read_text(encoding="utf-8")
    return Answer(200, text=text, content_type=_STATIC[name], headers=PAGE_HEADERS)


# ----------------------------------------------------------------------
# Workflows
# ----------------------------------------------------------------------


def list_page(request: Request) -> Answer:
    """A page of the filtered list, newest first, and the cursor of the next page."""
    body = as_object(request.body, "POST /dashboard/api/workflows")
    limit = count_field(body, "limit", 50, PAGE_MAX)
    filters = {**list_filters(body.get("filters")), "limit": limit + 1}
    found = request.management.list_workflows(filters, cursor(body.get("after")))
    rows = [workflow_summary(s) for s in found[:limit]]
    last = rows[-1] if len(found) > limit else None
    after = {"created_at": last["created_at"], "workflow_id": last["workflow_id"]} if last else None
    return Answer(200, {"workflows": rows, "after": after})


BULK_STATUSES = {"cancel": ["PENDING", "ENQUEUED", "DELAYED"],
                 "resume": ["CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"]}


def bulk(request: Request) -> Answer:
    """Cancel or resume every workflow the filters select (up to ``BULK_MAX``)."""
    body = as_object(request.body, "POST /dashboard/api/bulk")
    action = text_field(body, "action")
    if action not in ("cancel", "resume"):
        raise HTTPError(400, f"'action' must be cancel or resume, got {action!r}")
    filters = {**list_filters(body.get("filters")), "limit": BULK_MAX}
    # Only what the action applies to: a bulk resume must not start enqueued work past its queue's limits.
    eligible = BULK_STATUSES[action]
    filters["status"] = [s for s in filters.get("status", eligible) if s in eligible]
    ids = [s.workflow_id for s in request.management.list_workflows(filters)] if filters["status"] else []
    management = request.management
    done = (management.cancel(ids) if action == "cancel" else management.resume(ids)) if ids else []
    return Answer(200, {"workflow_ids": done})


def workflow(request: Request) -> Answer:
    """Everything about one workflow: its record, steps, descendants, events, messages, streams."""
    management, workflow_id = request.management, request.item
    status = management.get_workflow(workflow_id)
    if status is None:
        raise HTTPError(404, f"Workflow {workflow_id} does not exist")
    sysdb, codec = management.sysdb, management.codec
    return Answer(200, {
        "workflow": workflow_detail(status),
        "steps": [step_record(s) for s in management.list_workflow_steps(workflow_id)],
        "descendants": _descendants(management, workflow_id),
        "events": [{"key": k, "value": stored_value(codec, v, f)}
                   for k, (v, f) in sorted(sysdb.all_events(workflow_id).items())],
        "messages": [{**{k: m[k] for k in ("message_uuid", "topic", "created_at_epoch_ms")},
                      "consumed": bool(m["consumed"]),
                      "value": stored_value(codec, m["message"], m["serialization"])}
                     for m in sysdb.workflow_messages(workflow_id, DETAIL_MAX)],
        "streams": [{"key": s["key"], "offset": s["offset"],
                     "value": stored_value(codec, s["value"], s["serialization"])}
                    for s in sysdb.workflow_streams(workflow_id, DETAIL_MAX)],
    })


def _descendants(management: Management, workflow_id: str) -> List[Dict[str, Any]]:
    """Every workflow started under this one, at any depth; the page draws the tree."""
    ids = [i for i in management.sysdb.descendants([workflow_id]) if i != workflow_id][:DETAIL_MAX]
    if not ids:
        return []
    found = management.list_workflows({"workflow_ids": ids, "load_input": False, "load_output": False})
    return [workflow_summary(s) for s in found]


def cancel(request: Request) -> Answer:
    return Answer(200, {"workflow_ids": request.management.cancel([request.item])})


def resume(request: Request) -> Answer:
    return Answer(200, {"workflow_ids": request.management.resume([request.item])})


def restart(request: Request) -> Answer:
    return Answer(200, {"workflow_id": request.management.fork(request.item, 1)})


def fork(request: Request) -> Answer:
    body = as_object(request.body, "POST /dashboard/api/workflows/{id}/fork")
    step = count_field(body, "start_step", 1, 2**31 - 1)
    new_id = text_field(body, "new_workflow_id", required=False)
    return Answer(200, {"workflow_id": request.management.fork(request.item, step, new_workflow_id=new_id)})


def delete(request: Request) -> Answer:
    body = as_object(request.body, "POST /dashboard/api/workflows/{id}/delete")
    children = body.get("delete_children", False) is True
    return Answer(200, {"workflow_ids": request.management.delete([request.item], children)})


# ----------------------------------------------------------------------
# Queues, executors, versions, rates
# ----------------------------------------------------------------------


_LIMITS = ("concurrency", "worker_concurrency", "rate_limit_max", "rate_limit_period_sec",
           "priority_enabled", "partition_queue", "application_name")


def queues(request: Request) -> Answer:
    """Every queue registered or holding work: its limits, depth by status, work per executor."""
    sysdb = request.management.sysdb
    found: Dict[str, Dict[str, Any]] = {}

    def queue(name: str) -> Dict[str, Any]:
        return found.setdefault(name, {"name": name, "limits": None, "depth": {}, "in_flight": {},
                                       "oldest_enqueued_at": None})
    for name, config in request.declared.items():
        queue(name)["limits"] = declared_limits(config)
    for row in sysdb.list_queues():
        queue(row["name"])["limits"] = {k: row[k] for k in _LIMITS}
    now = now_ms()
    for row in sysdb.queue_depths():
        entry = queue(row["queue"])
        entry["depth"][row["status"]] = row["depth"]
        if row["status"] == "ENQUEUED":
            entry["oldest_enqueued_at"] = now - row["oldest_age_ms"]
    for row in sysdb.queue_in_flight():
        queue(row["queue_name"])["in_flight"][row["executor_id"] or ""] = int(row["workflows"])
    return Answer(200, {"queues": sorted(found.values(), key=lambda q: q["name"]), "now": now})


def declared_limits(config: QueueConfig) -> Dict[str, Any]:
    """A queue declared in code, with the columns of a registered queue's limits."""
    limiter = config.limiter
    return {"concurrency": config.concurrency, "worker_concurrency": config.worker_concurrency,
            "rate_limit_max": limiter["limit"] if limiter else None,
            "rate_limit_period_sec": limiter["period"] if limiter else None,
            "priority_enabled": config.priority_enabled, "partition_queue": config.partition_queue,
            "application_name": None}


def executors(request: Request) -> Answer:
    """Executors with their heartbeat's age and load; versions with their unfinished work."""
    sysdb = request.management.sysdb
    rows = [{**row, "heartbeat_age_ms": int(row["now_ms"]) - int(row["heartbeat_at"])}
            for row in sysdb.list_executors()]
    waiting: Dict[str, Dict[str, int]] = {}
    for row in sysdb.pending_by_version():
        waiting.setdefault(row["application_version"] or "", {})[row["status"]] = int(row["workflows"])
    versions = [{"version_name": v.version_name, "application_name": v.application_name,
                 "created_at": v.created_at, "latest": i == 0, "waiting": waiting.pop(v.version_name, {})}
                for i, v in enumerate(sysdb.list_application_versions())]
    versions += [{"version_name": name, "application_name": None, "created_at": None, "latest": False,
                  "waiting": counts} for name, counts in sorted(waiting.items())]
    return Answer(200, {"executors": rows, "versions": versions})


def rates(request: Request) -> Answer:
    """Workflows finished per minute over the last hour, by final status."""
    now = now_ms()
    rows = request.management.sysdb.outcomes_per_minute(now - 60 * 60_000)
    return Answer(200, {"now": now, "minutes": [
        {"minute": int(r["minute"]), "status": r["status"], "workflows": int(r["workflows"])} for r in rows]})


# ----------------------------------------------------------------------
# Schedules
# ----------------------------------------------------------------------


def list_schedules(request: Request) -> Answer:
    found = request.schedules.list()
    return Answer(200, {"schedules": [{**s, "context": shown(s["context"])} for s in found]})


def schedule_action(request: Request, action: str) -> Answer:
    schedules, name = request.schedules, request.item
    if schedules.get(name) is None:
        raise HTTPError(404, f"Schedule {name!r} does not exist")
    if action in ("pause", "resume"):
        schedules.set_status(name, "PAUSED" if action == "pause" else "ACTIVE")
        return Answer(200, {"schedule_name": name})
    if action == "trigger":
        return Answer(200, {"workflow_ids": [schedules.trigger(name)]})
    body = as_object(request.body, "POST /dashboard/api/schedules/{name}/backfill")
    start, end = (epoch_time(body.get(k), k) for k in ("start", "end"))
    return Answer(200, {"workflow_ids": schedules.backfill(name, start, end)})


def _on_schedule(action: str) -> Callable[[Request], Answer]:
    return lambda request: schedule_action(request, action)


_API = f"{PREFIX}/api"
_WF = f"{_API}/workflows/(?P<id>[^/]+)"
ENDPOINTS = (
    Endpoint("GET", PREFIX, to_page),
    Endpoint("GET", f"{PREFIX}/", static_file),
    Endpoint("GET", f"{PREFIX}/(?P<id>[^/]+)", static_file),
    Endpoint("POST", f"{_API}/workflows", list_page),
    Endpoint("POST", f"{_API}/bulk", bulk, changes=True),
    Endpoint("GET", _WF, workflow),
    Endpoint("POST", f"{_WF}/cancel", cancel, changes=True),
    Endpoint("POST", f"{_WF}/resume", resume, changes=True),
    Endpoint("POST", f"{_WF}/restart", restart, changes=True),
    Endpoint("POST", f"{_WF}/fork", fork, changes=True),
    Endpoint("POST", f"{_WF}/delete", delete, changes=True),
    Endpoint("GET", f"{_API}/queues", queues),
    Endpoint("GET", f"{_API}/executors", executors),
    Endpoint("GET", f"{_API}/rates", rates),
    Endpoint("GET", f"{_API}/schedules", list_schedules),
    *(Endpoint("POST", f"{_API}/schedules/(?P<id>[^/]+)/{action}", _on_schedule(action), changes=True)
      for action in ("pause", "resume", "trigger", "backfill")),
)
