"""The admin server is safe by default, over real HTTP on the chosen backend:
no other site's page changes anything, a foreign Host reads nothing, off
loopback a token is required, and bad bodies are refused at once.

Each refused change is checked in the database: the workflow it aimed at
is as it was, nothing was deleted, forked or deactivated.
"""

from __future__ import annotations

import json
import socket
from typing import Any, Callable, Dict, Iterator, List, Tuple, cast

import pytest

from dbos import DBOS, DBOSConfig, SetWorkflowID
from dbos._ops.admin_server import ROUTES, _Server
from dbos.error import DBOSConfigError
from tests.integration.sysdb_sql import count_rows, status_row
from tests.integration.test_admin_server import (
    NEVER_S,
    Admin,
    admin_port,
    engine,
    free_port,
    launch,
    listening,
)

__all__ = ["admin_port", "launch"]  # the fixtures, shared with test_admin_server

# Far below the connection's 30 s idle timeout: a server that waited for the
# missing bytes instead of answering makes this socket time out, failing the test.
QUICK_S = 10.0
TOKEN = "s3cret-token-for-tests-0123456789"
MUTATING: List[Tuple[str, str]] = [
    ("GET", "/deactivate"), ("POST", "/deactivate"),
    ("POST", "/dbos-workflow-recovery"), ("POST", "/dbos-garbage-collect"), ("POST", "/dbos-global-timeout"),
    ("POST", "/workflows/guarded/cancel"), ("POST", "/workflows/guarded/resume"),
    ("POST", "/workflows/guarded/restart"), ("POST", "/workflows/guarded/fork"),
    # The dashboard's, served by the same server (admin_dashboard: true).
    ("POST", "/dashboard/api/bulk"),
    *(("POST", f"/dashboard/api/workflows/guarded/{action}") for action in ("cancel", "resume", "restart", "fork",
                                                                            "delete")),
    *(("POST", f"/dashboard/api/schedules/guarded/{action}") for action in ("pause", "resume", "trigger",
                                                                            "backfill")),
]
# What each mutating endpoint would do if it ran: cancel everything, delete everything.
BODIES: Dict[str, bytes] = {
    "/dbos-workflow-recovery": b'["local"]',
    "/dbos-garbage-collect": b'{"cutoff_epoch_timestamp_ms": 99999999999999}',
    "/dbos-global-timeout": b'{"cutoff_epoch_timestamp_ms": 99999999999999}',
    "/workflows/guarded/fork": b'{"start_step": 1}',
    "/dashboard/api/bulk": b'{"action": "cancel", "filters": {}}',
    "/dashboard/api/workflows/guarded/fork": b'{"start_step": 1}',
}


def http(port: int, method: str, path: str, headers: Dict[str, str], body: bytes = b"") -> Tuple[int, Any]:
    """One request as a page or a script would send it, byte for byte (Host included)."""
    lines = [f"{method} {path} HTTP/1.1", "Connection: close", *(f"{k}: {v}" for k, v in headers.items())]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    with socket.create_connection(("127.0.0.1", port), timeout=QUICK_S) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return _answer(conn)


def _answer(conn: socket.socket) -> Tuple[int, Any]:
    received = b""
    while chunk := conn.recv(65536):
        received += chunk
    head, _, text = received.decode().partition("\r\n\r\n")
    status = int(head.split()[1])
    return status, (json.loads(text) if text.startswith(("{", "[")) else text)


@pytest.fixture
def guarded(launch: Callable[..., Admin]) -> Iterator[Tuple[Admin, Callable[[], Dict[str, Any]]]]:
    """A launched server and a workflow waiting for a message; the second item
    reads what a refused request must not have changed."""

    @DBOS.workflow()
    def waiting() -> Any:
        return DBOS.recv("go", timeout_seconds=NEVER_S)

    admin = launch(admin_dashboard=True)
    with SetWorkflowID("guarded"):
        DBOS.start_workflow(waiting)

    def state() -> Dict[str, Any]:
        row = status_row("guarded")
        return {"status": row["status"], "recovery_attempts": row["recovery_attempts"],
                "workflows": count_rows("status"), "deactivated": engine().deactivated}

    yield admin, state


def test_a_cross_origin_plain_text_request_to_each_mutating_endpoint_changes_nothing(
    guarded: Tuple[Admin, Callable[[], Dict[str, Any]]]
) -> None:
    """As a page of another site sends them: a form's text/plain POST (no preflight),
    with a foreign Origin and Host, then with the right Host, then with no Origin at all."""
    admin, state = guarded
    before = state()
    assert {(r.method, r.pattern.pattern.strip("^$")) for r in ROUTES if r.changes} == {
        (m, p.replace("guarded", "(?P<id>[^/]+)")) for m, p in MUTATING}
    own_host = f"127.0.0.1:{admin.port}"
    pages = [
        {"Host": "evil.example", "Origin": "http://evil.example"},  # DNS rebinding
        {"Host": own_host, "Origin": "http://evil.example"},
        {"Host": own_host, "Origin": "null"},  # a sandboxed frame or a file
        {"Host": own_host, "Sec-Fetch-Site": "cross-site"},
        {"Host": own_host, "Referer": "http://evil.example/"},  # an old browser's <img src>: GET only
    ]
    for method, path in MUTATING:
        for page in pages if method == "GET" else pages[:4]:
            headers = {"Content-Type": "text/plain", **page}
            status, answer = http(admin.port, method, path, headers, BODIES.get(path, b""))
            assert status == 403 and "Refused" in answer["error"], (method, path, page, answer)
    assert state() == before


def test_a_browser_change_needs_a_header_no_form_can_send(
    guarded: Tuple[Admin, Callable[[], Dict[str, Any]]]
) -> None:
    admin, state = guarded
    before = state()
    own = {"Host": f"127.0.0.1:{admin.port}", "Origin": f"http://127.0.0.1:{admin.port}",
           "Sec-Fetch-Site": "same-origin"}
    # Even a page of the server's own origin: a plain form POST is refused...
    status, answer = http(admin.port, "POST", "/workflows/guarded/cancel", {**own, "Content-Type": "text/plain"})
    assert status == 403 and "X-DBOS-Request" in answer["error"]
    status, answer = http(admin.port, "GET", "/deactivate", own)
    assert status == 403 and "POST /deactivate" in answer["error"]
    assert state() == before
    # ...and the dashboard's own requests, which add the header, are not.
    status, answer = http(admin.port, "POST", "/deactivate", {**own, "X-DBOS-Request": "1"})
    assert (status, answer) == (200, "deactivated") and engine().deactivated
    status, _ = http(admin.port, "POST", "/workflows/guarded/cancel", {**own, "X-DBOS-Request": "1"})
    assert status == 204 and status_row("guarded")["status"] == "CANCELLED"


def test_scripts_still_use_get_deactivate(launch: Callable[..., Admin]) -> None:
    """curl and DBOS Transact's tools send no browser header: unchanged for them."""
    admin = launch()
    status, answer = http(admin.port, "GET", "/deactivate", {"Host": f"localhost:{admin.port}"})
    assert (status, answer) == (200, "deactivated") and engine().deactivated


def test_a_foreign_host_header_is_refused_for_every_read(launch: Callable[..., Admin]) -> None:
    admin = launch()
    for path in ("/workflows/any", "/metrics", "/dbos-metrics.json", "/dbos-workflow-queues-metadata"):
        status, answer = http(admin.port, "GET", path, {"Host": f"evil.example:{admin.port}"})
        assert status == 403 and "evil.example" in answer["error"], path


def test_the_three_bad_bodies_get_400_at_once(launch: Callable[..., Admin]) -> None:
    admin = launch()
    host = {"Host": f"127.0.0.1:{admin.port}", "Content-Type": "application/json"}
    deep = b"[" * 100_000 + b"]" * 100_000
    status, answer = http(admin.port, "POST", "/workflows", host, deep)
    assert status == 400 and "nested too deeply" in answer["error"]
    for path, body in (("/workflows", {"limit": 10**20}), ("/queues", {"offset": 10**20}),
                       ("/dbos-global-timeout", {"cutoff_epoch_timestamp_ms": 10**20}),
                       ("/workflows/x/fork", {"start_step": 10**20})):
        status, answer = http(admin.port, "POST", path, host, json.dumps(body).encode())
        assert status == 400 and "must be an integer" in answer["error"], (path, answer)
    # A body shorter than its Content-Length, the connection left open.
    with socket.create_connection(("127.0.0.1", admin.port), timeout=QUICK_S) as conn:
        conn.sendall(b"POST /workflows HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{\"limit\"")
        status, answer = _answer(conn)
    assert status == 400 and "shorter than its Content-Length" in answer["error"]
    assert admin.get("/dbos-healthz").status == 200


def test_the_listen_backlog_fits_a_burst() -> None:
    assert _Server.request_queue_size >= 128


# ----------------------------------------------------------------------
# The token
# ----------------------------------------------------------------------


def test_binding_beyond_loopback_needs_a_token(config: DBOSConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBOS_ADMIN_TOKEN", raising=False)
    port = free_port()
    DBOS(config=cast(DBOSConfig, {**config, "run_admin_server": True, "admin_port": port,
                                  "admin_host": "0.0.0.0"}))
    try:
        with pytest.raises(DBOSConfigError, match="admin_token") as caught:
            DBOS.launch()
        assert "DBOS_ADMIN_TOKEN" in str(caught.value) and "0.0.0.0" in str(caught.value)
        assert not listening(port)
    finally:
        DBOS.destroy(destroy_registry=True)


def test_a_short_token_is_refused(config: DBOSConfig) -> None:
    with pytest.raises(DBOSConfigError, match="admin_token"):
        DBOS(config=cast(DBOSConfig, {**config, "run_admin_server": True, "admin_token": "short"}))
    DBOS.destroy(destroy_registry=True)


def test_with_a_token_every_request_but_health_must_carry_it(
    launch: Callable[..., Admin], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bound to every interface (reached here through loopback), the token from the environment."""
    monkeypatch.setenv("DBOS_ADMIN_TOKEN", TOKEN)
    admin = launch(admin_host="0.0.0.0")
    host = {"Host": f"127.0.0.1:{admin.port}"}
    for method, path in (("GET", "/workflows/x"), ("GET", "/metrics"), ("POST", "/workflows"),
                         ("POST", "/deactivate"), ("GET", "/deactivate")):
        for auth in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": TOKEN},
                     {"Authorization": f"Basic {TOKEN}"}):
            status, answer = http(admin.port, method, path, {**host, **auth})
            assert status == 401 and "Authorization: Bearer" in answer["error"], (method, path, auth)
    assert not engine().deactivated
    assert http(admin.port, "GET", "/dbos-healthz", host) == (200, "healthy")
    bearer = {**host, "Authorization": f"Bearer {TOKEN}"}
    assert http(admin.port, "POST", "/workflows", bearer, b"{}") == (200, [])
    assert http(admin.port, "GET", "/deactivate", bearer) == (200, "deactivated")
