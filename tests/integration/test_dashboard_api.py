"""The dashboard's JSON API over real HTTP, without a browser, on the backend
chosen with ``--backend``: on the admin server of a launched app
(``admin_dashboard: true``) and on ``dbos dashboard``'s own server.

Workflows hand off through messages and handles; nothing waits on the clock.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, cast

import pytest

from dbos import DBOS, DBOSConfig, Queue, SetWorkflowID
from dbos._engine.engine import peek_engine
from dbos._ops.dashboard_server import DashboardServer
from dbos._ops.management import Management
from dbos._serialization import Codec
from dbos._sysdb import SystemDatabase
from tests.integration.sysdb_sql import wait_for_launch_recovery
from tests.threads import result

WAIT_S = 30.0
CHANGE = {"X-DBOS-Request": "1"}
DBOS_CLI = [sys.executable, "-c", "import sys; from dbos._ops.cli import main; sys.exit(main())"]


class Page:
    """What the dashboard's page does over HTTP, against the server on ``port``."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, method: str, path: str, body: Any = None,
             headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, str], str]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with self._opener.open(request, timeout=WAIT_S) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode()

    def get(self, path: str) -> Any:
        status, _, text = self.call("GET", "/dashboard/api" + path)
        assert status == 200, text
        return json.loads(text)

    def post(self, path: str, body: Any, headers: Optional[Dict[str, str]] = None) -> Tuple[int, Any]:
        status, _, text = self.call("POST", "/dashboard/api" + path, body, {**CHANGE, **(headers or {})})
        return status, json.loads(text)

    def listed(self, filters: Dict[str, Any], limit: int = 50, after: Any = None) -> Dict[str, Any]:
        status, found = self.post("/workflows", {"filters": filters, "limit": limit, "after": after})
        assert status == 200, found
        return cast(Dict[str, Any], found)


def name_of(func: Callable[..., Any]) -> str:
    return str(getattr(func, "dbos_function_name"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def launch(config: DBOSConfig) -> Iterator[Callable[..., Page]]:
    port = free_port()

    def go(**settings: Any) -> Page:
        merged = {**config, "run_admin_server": True, "admin_port": port, "admin_dashboard": True, **settings}
        DBOS(config=cast(DBOSConfig, merged))
        DBOS.launch()
        wait_for_launch_recovery()
        return Page(port)

    yield go
    running = peek_engine()
    if running is not None and running.active_workflows():
        DBOS.cancel_workflows(running.active_workflows())
    DBOS.destroy(destroy_registry=True, workflow_completion_timeout_sec=int(WAIT_S))


def declare() -> Dict[str, Any]:
    """The app: a two-step workflow with a child, an event, a stream and a message; one that waits."""
    @DBOS.step()
    def first(x: int) -> int:
        return x + 1

    @DBOS.step()
    def second(x: int) -> int:
        return x * 10

    @DBOS.workflow()
    def child(x: int) -> str:
        return f"child of {x}"

    @DBOS.workflow()
    def two_steps(x: int) -> int:
        y = second(first(x))
        DBOS.set_event("progress", {"done": y})
        DBOS.write_stream("lines", "<b>one</b>")
        DBOS.start_workflow(child, x).get_result()
        return y

    @DBOS.workflow()
    def waiting() -> Any:
        return DBOS.recv("go", timeout_seconds=120)

    @DBOS.workflow()
    def scheduled(when: Any, context: Any) -> str:
        return f"ran at {when}"

    return {"two_steps": two_steps, "waiting": waiting, "child": child, "scheduled": scheduled}


def test_list_filters_and_keyset_pages(launch: Callable[..., Page]) -> None:
    app = declare()
    page = launch()
    ids = [f"page-{i}" for i in range(5)]
    for workflow_id in ids:
        with SetWorkflowID(workflow_id):
            result(DBOS.start_workflow(app["two_steps"], 1))
    seen: List[str] = []
    after = None
    for _ in range(3):
        found = page.listed({"name": name_of(app["two_steps"]), "status": "SUCCESS"}, limit=2, after=after)
        seen += [w["workflow_id"] for w in found["workflows"]]
        after = found["after"]
        if after is None:
            break
    assert seen == list(reversed(ids))  # newest first, each once, the last page ends the list
    assert {w["workflow_id"] for w in page.listed({"id_prefix": "page-3"})["workflows"]} == {"page-3", "page-3-5"}
    assert page.listed({"status": "ERROR"})["workflows"] == []
    children = page.listed({"parent": "page-0"})["workflows"]
    assert [c["name"] for c in children] == [name_of(app["child"])]
    status, refused = page.post("/workflows", {"filters": {"colour": "red"}})
    assert status == 400 and "colour" in refused["error"]


def test_one_workflow_shows_steps_children_events_messages_streams(launch: Callable[..., Page]) -> None:
    app = declare()
    page = launch()
    with SetWorkflowID("detail"):
        assert result(DBOS.start_workflow(app["two_steps"], 4)) == 50
    DBOS.send("detail", {"late": True}, topic="note")
    found = page.get("/workflows/detail")
    assert found["workflow"]["status"] == "SUCCESS" and found["workflow"]["output"] == "50"
    assert json.loads(found["workflow"]["input"]) == {"args": [4], "kwargs": {}}
    names = [s["function_name"] for s in found["steps"]]
    assert [n.rsplit(".", 1)[-1] for n in names[:2]] == ["first", "second"]
    assert all(s["started_at_epoch_ms"] <= s["completed_at_epoch_ms"] for s in found["steps"][:2])
    assert [d["name"] for d in found["descendants"]] == [name_of(app["child"])]
    assert found["events"] == [{"key": "progress", "value": json.dumps({"done": 50})}]
    assert [(s["key"], s["value"]) for s in found["streams"]][0] == ("lines", json.dumps("<b>one</b>"))
    assert [(m["topic"], m["consumed"]) for m in found["messages"]] == [("note", False)]
    status, _, text = page.call("GET", "/dashboard/api/workflows/no-such-workflow")
    assert status == 404 and "no-such-workflow" in text


def test_cancel_needs_the_header_and_the_same_origin(launch: Callable[..., Page]) -> None:
    app = declare()
    page = launch()
    with SetWorkflowID("blocked"):
        handle = DBOS.start_workflow(app["waiting"])
    path = "/dashboard/api/workflows/blocked/cancel"
    refused = [
        page.call("POST", path, {}),  # no X-DBOS-Request
        page.call("POST", path, {}, {**CHANGE, "Origin": "http://evil.example"}),
        page.call("POST", path, {}, {**CHANGE, "Sec-Fetch-Site": "cross-site"}),
        page.call("POST", path, {}, {**CHANGE, "Host": "evil.example"}),
        page.call("GET", path),
    ]
    assert [r[0] for r in refused] == [403, 403, 403, 403, 405]
    assert handle.get_status().status == "PENDING"  # nothing changed
    status, done = page.post("/workflows/blocked/cancel", {})
    assert (status, done) == (200, {"workflow_ids": ["blocked"]})
    assert handle.get_status().status == "CANCELLED"
    status, done = page.post("/workflows/blocked/resume", {})
    assert (status, done["workflow_ids"]) == (200, ["blocked"])
    DBOS.send("blocked", "now", topic="go")
    assert result(DBOS.retrieve_workflow("blocked")) == "now"


def test_fork_restart_delete_and_bulk(launch: Callable[..., Page]) -> None:
    app = declare()
    page = launch()
    with SetWorkflowID("original"):
        result(DBOS.start_workflow(app["two_steps"], 2))
    status, forked = page.post("/workflows/original/fork", {"start_step": 2})
    assert status == 200
    assert result(DBOS.retrieve_workflow(forked["workflow_id"])) == 30
    assert page.get(f"/workflows/{forked['workflow_id']}")["workflow"]["forked_from"] == "original"
    status, restarted = page.post("/workflows/original/restart", {})
    assert status == 200 and result(DBOS.retrieve_workflow(restarted["workflow_id"])) == 30
    status, deleted = page.post("/workflows/original/delete", {"delete_children": True})
    assert status == 200 and deleted["workflow_ids"][0] == "original"
    assert DBOS.get_workflow_status("original") is None
    handles = []
    for i in range(3):
        with SetWorkflowID(f"bulk-{i}"):
            handles.append(DBOS.start_workflow(app["waiting"]))
    status, done = page.post("/bulk", {"action": "cancel", "filters": {"id_prefix": "bulk-"}})
    assert status == 200 and sorted(done["workflow_ids"]) == ["bulk-0", "bulk-1", "bulk-2"]
    assert {h.get_status().status for h in handles} == {"CANCELLED"}
    status, done = page.post("/bulk", {"action": "resume", "filters": {"id_prefix": "bulk-", "status": "SUCCESS"}})
    assert (status, done["workflow_ids"]) == (200, [])  # a finished workflow is not resumed
    status, done = page.post("/bulk", {"action": "resume", "filters": {"id_prefix": "bulk-"}})
    assert status == 200 and sorted(done["workflow_ids"]) == ["bulk-0", "bulk-1", "bulk-2"]
    for i in range(3):
        DBOS.send(f"bulk-{i}", i, topic="go")
    assert sorted(result(DBOS.retrieve_workflow(f"bulk-{i}")) for i in range(3)) == [0, 1, 2]


def test_queues_executors_rates_and_schedules(launch: Callable[..., Page]) -> None:
    app = declare()
    queue = Queue("dash-queue", concurrency=1)
    page = launch()
    blocker = queue.enqueue(app["waiting"])
    waiting = [queue.enqueue(app["waiting"]) for _ in range(2)]
    result(DBOS.start_workflow(app["two_steps"], 1))
    DBOS.create_schedule(schedule_name="nightly", workflow_fn=app["scheduled"], schedule="0 0 * * *")
    found = {q["name"]: q for q in page.get("/queues")["queues"]}["dash-queue"]
    assert found["limits"]["concurrency"] == 1  # declared in code, known to the admin server
    assert found["depth"].get("ENQUEUED", 0) + found["depth"].get("PENDING", 0) == 3
    assert sum(found["in_flight"].values()) == found["depth"].get("PENDING", 0)
    executors = page.get("/executors")
    assert [e["executor_id"] for e in executors["executors"]] == [peek_engine().identity.executor_id]  # type: ignore[union-attr]
    assert executors["versions"][0]["latest"] is True
    assert sum(m["workflows"] for m in page.get("/rates")["minutes"] if m["status"] == "SUCCESS") >= 2
    assert [s["schedule_name"] for s in page.get("/schedules")["schedules"]] == ["nightly"]
    assert page.post("/schedules/nightly/pause", {})[0] == 200
    assert DBOS.get_schedule("nightly")["status"] == "PAUSED"  # type: ignore[index]
    status, triggered = page.post("/schedules/nightly/trigger", {})
    assert status == 200 and result(DBOS.retrieve_workflow(triggered["workflow_ids"][0])).startswith("ran at")
    assert page.post("/schedules/missing/pause", {})[0] == 404
    DBOS.cancel_workflows([blocker.workflow_id] + [h.workflow_id for h in waiting])


def test_the_dashboard_is_off_unless_configured(launch: Callable[..., Page]) -> None:
    page = launch(admin_dashboard=False)
    status, _, text = page.call("GET", "/dashboard/")
    assert status == 404 and "admin_dashboard" in text


def test_the_page_is_served_with_its_files(launch: Callable[..., Page]) -> None:
    page = launch()
    for path, kind in (("/dashboard/", "text/html"), ("/dashboard/app.js", "text/javascript"),
                       ("/dashboard/style.css", "text/css")):
        status, headers, text = page.call("GET", path)
        assert status == 200 and headers["Content-Type"].startswith(kind) and text
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]  # no clicks through a frame
    assert page.call("GET", "/dashboard/secret.py")[0] == 404
    assert page.call("GET", "/dashboard")[0] == 200  # redirected to /dashboard/
    # The page writes recorded values as text only.
    _, _, script = page.call("GET", "/dashboard/app.js")
    assert "innerHTML" not in script and "X-DBOS-Request" in script


def test_with_an_admin_token_the_page_loads_and_its_api_needs_the_token(launch: Callable[..., Page]) -> None:
    token = "dashboard-token-0123456789"
    page = launch(admin_token=token)
    assert page.call("GET", "/dashboard/")[0] == 200  # the page holds no data: it asks for the token itself
    status, headers, _ = page.call("POST", "/dashboard/api/workflows", {"filters": {}}, CHANGE)
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    allowed = {**CHANGE, "Authorization": f"Bearer {token}"}
    status, _, text = page.call("POST", "/dashboard/api/workflows", {"filters": {}}, allowed)
    assert status == 200 and "workflows" in json.loads(text)
    _, _, script = page.call("GET", "/dashboard/app.js")
    assert "Authorization" in script and "sessionStorage" in script


def test_standalone_server_over_a_system_database(sys_db_url: str) -> None:
    sysdb = SystemDatabase(sys_db_url)
    sysdb.migrate()
    server = DashboardServer("127.0.0.1", 0, Management(sysdb, Codec()))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        page = Page(int(server.server_address[1]))
        assert page.listed({})["workflows"] == []
        assert page.get("/executors")["executors"] == []
        status, _, text = page.call("POST", "/dashboard/api/bulk", {"action": "cancel"},
                                    {**CHANGE, "Origin": "http://evil.example"})
        assert status == 403 and "origin" in text.lower()
        assert page.call("GET", "/", None)[0] in (200, 302)
    finally:
        server.shutdown()
        server.server_close()
        sysdb.close()


@pytest.mark.parametrize("where", ["url", "config file"])
def test_dbos_dashboard_command_serves_until_ctrl_c(sys_db_url: str, tmp_path: Any, where: str) -> None:
    sysdb = SystemDatabase(sys_db_url)
    sysdb.migrate()
    sysdb.close()
    port = free_port()
    named = [sys_db_url]
    if where == "config file":  # found in the working directory, as by the other commands
        (tmp_path / "dbos_config.yaml").write_text(f"name: shop\nsystem_database_url: '{sys_db_url}'\n")
        named = []
    # SIGINT restored for the child: a shell running the tests in the
    # background (as CI runs the two backends) has its children ignore it.
    proc = subprocess.Popen([*DBOS_CLI, "dashboard", *named, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(tmp_path),
                            env={**os.environ, "PYTHONPATH": os.getcwd()},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/dashboard/" in line, proc.stderr.read() if proc.stderr else ""
        assert Page(port).listed({})["workflows"] == []
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT_S)
        assert proc.returncode == 0 and out.strip() == "Dashboard stopped" and err == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT_S)


def test_dbos_dashboard_refuses_a_non_loopback_host(sys_db_url: str, tmp_path: Any) -> None:
    done = subprocess.run([*DBOS_CLI, "dashboard", sys_db_url, "--host", "0.0.0.0"],
                          capture_output=True, text=True, cwd=str(tmp_path), timeout=WAIT_S,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode == 1 and "loopback" in done.stderr
