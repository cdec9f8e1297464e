"""The shop app (``shop_app/``), served by uvicorn, killed mid-checkout and started again.

It is set up the way a DBOS Transact user sets up an app: ``dbos migrate``
run in the app's folder creates the system database and runs the app's
``alembic upgrade head``; then ``python -m uvicorn shop_app.main:app``
serves it. The test talks to it over HTTP only, kills it with SIGKILL while
two checkouts wait for their customers (stock taken, payment made), starts
it again, and checks that each checkout finished with every transaction and
the payment done exactly once.
"""

from __future__ import annotations

import base64
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import httpx
import pytest

from dbos import DBOSClient, StepInfo

from ..probe import database_exists, qualified, query

pytestmark = pytest.mark.acceptance

HERE = Path(__file__).parent
APP_DIR = HERE / "shop_app"
BIN = Path(sys.executable).parent
WAIT_S = 60.0  # an upper bound reached only when a test is already failing
LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")
# The shop's catalogue, as the second alembic revision seeds it.
LAMP, DESK = 1, 2
STOCK = {LAMP: 10, DESK: 3}
TRANSACTIONS = {"reserve", "mark_paid", "release"}


class Server:
    """One uvicorn process serving the shop; its output goes to a log, read on a thread."""

    def __init__(self, env: Dict[str, str], log: Path) -> None:
        self.log = log
        self.port: Optional[int] = None
        self._listening = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "shop_app.main:app", "--app-dir", str(HERE),
             "--host", "127.0.0.1", "--port", "0"],
            cwd=log.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        # Uvicorn says where it listens once the lifespan started, so DBOS has launched.
        if not self._listening.wait(WAIT_S) or self.port is None:
            self.proc.kill()
            raise AssertionError(f"the shop did not start:\n{self.output()}")
        self.http: httpx.Client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=WAIT_S)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with open(self.log, "a", encoding="utf-8") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                found = LISTENING.search(line)
                if found:
                    self.port = int(found.group(1))
                    self._listening.set()
        self._listening.set()  # ended: whoever waits stops waiting

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8") if self.log.exists() else ""

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        assert response.status_code == 200, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def kill(self) -> None:
        self.http.close()
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=WAIT_S) == -signal.SIGKILL

    def stop(self) -> None:
        """Ctrl-C, as an operator stops uvicorn: the lifespan ends and DBOS is destroyed."""
        self.http.close()
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.wait(timeout=WAIT_S) == 0, self.output()


@pytest.fixture
def app_env(sys_db_url: str, empty_db_url: str, tmp_path: Path) -> Dict[str, str]:
    """The environment the shop and its tools run in, as with its virtualenv activated."""
    env = dict(os.environ)
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONUNBUFFERED": "1",
        "DBOS_SYSTEM_DATABASE_URL": sys_db_url,
        "APP_DATABASE_URL": empty_db_url,
        "SHOP_PAYMENTS_LOG": str(tmp_path / "payments.log"),
    })
    return env


@pytest.fixture
def servers() -> Iterator[List[Server]]:
    """The servers a test starts; any still running at its end are killed."""
    started: List[Server] = []
    yield started
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(timeout=WAIT_S)


def migrate(env: Dict[str, str]) -> None:
    """``dbos migrate`` in the app's folder: the system database, then its alembic revisions."""
    result = subprocess.run([str(BIN / "dbos"), "migrate"], cwd=APP_DIR, env=env, capture_output=True,
                            text=True, timeout=WAIT_S)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Running: alembic upgrade head" in result.stdout


def start_checkout(server: Server, order_id: str, product_id: int, quantity: int) -> Any:
    return server.call("POST", f"/checkout/{product_id}", params={"quantity": quantity},
                       headers={"dbos-idempotency-key": order_id})


def test_checkout_killed_while_waiting_resumes_and_runs_each_effect_once(
    app_env: Dict[str, str], empty_db_url: str, sys_db_url: str, tmp_path: Path, servers: List[Server]
) -> None:
    assert not database_exists(empty_db_url)
    migrate(app_env)  # creates the application database too, which alembic needs on PostgreSQL
    assert query(empty_db_url, "SELECT version_num FROM alembic_version") == [("0002",)]
    assert inventory(empty_db_url) == STOCK

    paid, declined = f"order-{uuid.uuid4().hex[:8]}", f"order-{uuid.uuid4().hex[:8]}"
    servers.append(Server(app_env, tmp_path / "first.log"))
    first = servers[0]
    assert start_checkout(first, paid, LAMP, 3) == {"order_id": paid}
    assert start_checkout(first, declined, DESK, 1) == {"order_id": declined}
    for order_id in (paid, declined):
        # Set after the reservation and the payment, just before the wait for the customer.
        assert first.call("GET", f"/orders/{order_id}/stage")["stage"] == "awaiting_decision"
    assert first.call("GET", f"/orders/{paid}") == {
        "order": {"order_id": paid, "product_id": LAMP, "quantity": 3, "status": "RESERVED", "payment_ref": None},
        "workflow_status": "PENDING",
    }
    first.kill()
    # Killed mid-way: the stock is taken and the payments are made, nothing more.
    assert inventory(empty_db_url) == {LAMP: STOCK[LAMP] - 3, DESK: STOCK[DESK] - 1}
    assert sorted(ledger(tmp_path)) == sorted([f"pay-{paid} 7500", f"pay-{declined} 12000"])

    servers.append(Server(app_env, tmp_path / "second.log"))
    second = servers[1]
    # The customer's browser retries its checkout: the same order, nothing started again.
    assert start_checkout(second, paid, LAMP, 3) == {"order_id": paid}
    second.call("POST", f"/orders/{paid}/confirm")
    second.call("POST", f"/orders/{declined}/decline")
    assert second.call("GET", f"/orders/{paid}/result")["result"] == "PAID"
    assert second.call("GET", f"/orders/{declined}/result")["result"] == "CANCELLED"
    assert second.call("GET", f"/orders/{paid}") == {
        "order": {"order_id": paid, "product_id": LAMP, "quantity": 3, "status": "PAID",
                  "payment_ref": f"pay-{paid}"},
        "workflow_status": "SUCCESS",
    }
    assert second.call("GET", f"/products/{LAMP}")["inventory"] == STOCK[LAMP] - 3
    second.stop()

    # Looked at directly, with the server gone.
    assert inventory(empty_db_url) == {LAMP: STOCK[LAMP] - 3, DESK: STOCK[DESK]}
    assert order_statuses(empty_db_url) == {paid: "PAID", declined: "CANCELLED"}
    assert sorted(ledger(tmp_path)) == sorted([f"pay-{paid} 7500", f"pay-{declined} 12000"])
    steps = workflow_steps(sys_db_url, [paid, declined])
    # Each step once, in order, the recovered run replaying the first run's
    # (a recv's timeout, DBOS.sleep, is recorded only after a long wait).
    assert step_names(steps[paid]) == ["reserve", "charge", "DBOS.setEvent", "DBOS.recv", "mark_paid",
                                       "DBOS.setEvent"]
    assert step_names(steps[declined]) == ["reserve", "charge", "DBOS.setEvent", "DBOS.recv", "release",
                                           "DBOS.setEvent"]
    # One recorded output per transaction a workflow ran, the value its step
    # returned; none for the reads the handlers ran outside workflows.
    assert recorded_outputs(empty_db_url) == {
        (workflow_id, int(step["function_id"])): step["output"]
        for workflow_id, found in steps.items() for step in found if step["function_name"] in TRANSACTIONS
    }


def inventory(app_url: str) -> Dict[int, int]:
    return {int(r[0]): int(r[1]) for r in query(app_url, "SELECT product_id, inventory FROM products")}


def order_statuses(app_url: str) -> Dict[str, str]:
    return {str(r[0]): str(r[1]) for r in query(app_url, "SELECT order_id, status FROM orders")}


def ledger(tmp_path: Path) -> List[str]:
    """The payment provider's ledger: one line per charge the payment step made."""
    return (tmp_path / "payments.log").read_text().splitlines()


def recorded_outputs(app_url: str) -> Dict[Tuple[str, int], Any]:
    """``datasource_outputs``, each output decoded (DBOS Transact's format: base64 of a pickle)."""
    table = qualified(app_url, "datasource_outputs")
    rows = query(app_url, f"SELECT workflow_id, step_id, output, error, serialization FROM {table}")
    assert all(r[3] is None and r[4] == "py_pickle" for r in rows), rows
    return {(str(r[0]), int(r[1])): pickle.loads(base64.b64decode(r[2])) for r in rows}


def workflow_steps(sys_db_url: str, workflow_ids: List[str]) -> Dict[str, List[StepInfo]]:
    client = DBOSClient(system_database_url=sys_db_url)
    try:
        return {wid: list(client.list_workflow_steps(wid)) for wid in workflow_ids}
    finally:
        client.destroy()


def step_names(steps: List[StepInfo]) -> List[str]:
    return [str(s["function_name"]) for s in steps if s["function_name"] != "DBOS.sleep"]
