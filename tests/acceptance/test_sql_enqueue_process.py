"""Plain SQL drives an app running in another real process (PostgreSQL).

A ``psql`` session enqueues a workflow with ``dbos.enqueue_workflow`` in a
transaction together with its own write (the outbox pattern), then answers
the workflow with ``dbos.send_message``; the app of ``client_app.py``, which
knows nothing of SQL, runs it from its portable JSON row. The test reads
the outcome back through a ``DBOSClient`` and as plain text through psql.
"""

from __future__ import annotations

import json
import subprocess
from typing import Iterator

import pytest

from dbos import DBOSClient
from dbos._sysdb import SystemDatabase
from tests.acceptance.test_client_process import WAIT_S, running_app

pytestmark = pytest.mark.acceptance


def psql(url: str, script: str) -> str:
    done = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url], input=script,
                          capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def client(backend: str, sys_db_url: str) -> Iterator[DBOSClient]:
    if backend != "postgres":
        pytest.skip("the SQL functions exist on PostgreSQL only")
    SystemDatabase(sys_db_url).migrate()
    with running_app(sys_db_url):
        client = DBOSClient(system_database_url=sys_db_url)
        yield client
        client.destroy()


def test_a_psql_outbox_transaction_enqueues_work_another_process_runs(client: DBOSClient, sys_db_url: str) -> None:
    enqueued = psql(sys_db_url, """
        BEGIN;
        CREATE TABLE outbox_orders (id TEXT PRIMARY KEY, item TEXT NOT NULL);
        INSERT INTO outbox_orders VALUES ('order-sql', 'lamp');
        SELECT dbos.enqueue_workflow('place_order', 'orders', ARRAY['"lamp"'::json],
                                     '{"quantity": 3}'::json, workflow_id => 'order-sql');
        COMMIT;
    """)
    assert enqueued == "order-sql"
    # The app's event, in the workflow's portable format, is readable by anyone.
    assert client.get_event("order-sql", "quote", timeout_seconds=WAIT_S) == 12
    psql(sys_db_url, "SELECT dbos.send_message('order-sql', '\"approved\"'::json, 'decision');")
    handle = client.retrieve_workflow("order-sql")
    assert handle.get_result(polling_interval_sec=0.05) == "lamp x3 = 12: approved"
    output = psql(sys_db_url, "SELECT serialization || ' ' || output FROM dbos.workflow_status "
                              "WHERE workflow_uuid = 'order-sql';")
    assert output == 'portable_json "lamp x3 = 12: approved"'
    assert json.loads(psql(sys_db_url, "SELECT value FROM dbos.workflow_events WHERE key = 'quote';")) == 12
