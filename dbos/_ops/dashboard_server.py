"""``dbos dashboard``: the dashboard over a system database, with no application.

It serves the same endpoints as the admin server's ``/dashboard``
(``dashboard_api.py``) through the admin server's request handling (bodies,
limits, JSON errors) and the same checks against other sites' pages and
DNS rebinding. It starts no workflow of its own: what it changes, it changes
as the command line does, and the applications' processes do the work.
"""

from __future__ import annotations

import re
import socket
from http.server import ThreadingHTTPServer
from typing import Any, List, Tuple, cast
from urllib.parse import unquote, urlsplit

from .._queues.schedules import Schedules
from .admin_json import HTTPError
from .admin_origin import check_change, check_host
from .admin_request import read_body
from .admin_server import AdminRequestHandler, Reply, Route
from .dashboard_api import ENDPOINTS, PREFIX, Endpoint, Request, serve
from .management import Management


def _unused(call: Any) -> Reply:
    raise AssertionError("dashboard routes are served by DashboardRequestHandler")


# Routes for the admin server's body reading, each with its endpoint.
_ROUTES: List[Tuple[Route, Endpoint]] = [
    (Route(e.method, re.compile(f"^{e.path}$"), _unused, e.body, e.changes), e) for e in ENDPOINTS]


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, host: str, port: int, management: Management) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.host = host
        self.management = management
        self.schedules = Schedules(management.sysdb, management.codec, management.app_name)
        super().__init__((host, port), DashboardRequestHandler)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.server_address[1]}{PREFIX}/"


class DashboardRequestHandler(AdminRequestHandler):
    def _dispatch(self) -> Reply:
        server = cast(DashboardServer, self.server)
        check_host(self.headers, server.host)
        path = urlsplit(self.path).path
        if path in ("", "/"):
            return Reply(302, {"location": f"{PREFIX}/"}, {"Location": f"{PREFIX}/"})
        route, endpoint, item = _find(self.command, path)
        if route.changes:
            check_change(self.headers, self.command)
        body = read_body(self, route.body, route.bad_json)
        answer = serve(endpoint, Request(server.management, server.schedules, item, body, self.headers))
        return Reply(answer.status, answer.body, answer.headers, answer.text, answer.content_type)


def _find(method: str, path: str) -> Tuple[Route, Endpoint, str]:
    """The route of a path; 404 or 405 if none. HEAD is a GET without its body."""
    matches = [(r, e, m) for r, e in _ROUTES if (m := r.pattern.match(path))]
    if not matches:
        raise HTTPError(404, f"No such dashboard path: {path}")
    for route, endpoint, match in matches:
        if route.method == method or (method == "HEAD" and route.method == "GET"):
            return route, endpoint, unquote(match.groupdict().get("id") or "")
    allowed = ", ".join(sorted({r.method for r, _, _ in matches}))
    raise HTTPError(405, f"{method} is not allowed on {path}; use {allowed}", {"Allow": allowed})
