"""Shutting down while a workflow is inside a transaction, in a real process.

Closing a SQLite connection that another thread is using can crash the
interpreter, so shutdown leaves such a connection open (it closes with the
process). This runs in a child process: a crash shows as a signal exit, not
as a dead test session.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.acceptance

PROGRAM = """
import sys, threading
from dbos import DBOS, DBOSConfig

inside, release, after = threading.Event(), threading.Event(), threading.Event()

@DBOS.transaction()
def hold() -> None:
    DBOS.sql_session.execute_sql("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    DBOS.sql_session.execute_sql("INSERT INTO t VALUES (1)")
    inside.set()
    release.wait(30)
    try:  # the connection is used again after the shutdown: it must still be open
        DBOS.sql_session.execute_sql("INSERT INTO t VALUES (2)")
        print("STILL_OPEN", flush=True)
    finally:
        after.set()

@DBOS.workflow()
def wf() -> None:
    hold()

DBOS(config=DBOSConfig(name="shutdown-app", system_database_url=sys.argv[1],
                       application_database_url=sys.argv[2], application_datasource="peewee"))
DBOS.launch()
DBOS.start_workflow(wf)
assert inside.wait(30)
DBOS.destroy()  # the transaction's connection is still in use on the workflow's thread
release.set()
assert after.wait(30)
print("DESTROYED", flush=True)
"""


def test_destroy_with_a_workflow_inside_a_sqlite_transaction(sys_db_url: str, tmp_path: Path) -> None:
    app_url = f"sqlite:///{tmp_path}/app.sqlite"
    done = subprocess.run([sys.executable, "-c", PROGRAM, sys_db_url, app_url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "STILL_OPEN" in done.stdout and "DESTROYED" in done.stdout


LEFT_RUNNING = """
import sys, threading
from dbos import DBOS, DBOSClient, DBOSConfig, SetWorkflowID

inside, release = threading.Event(), threading.Event()

@DBOS.step()
def first() -> int:
    return 1

@DBOS.step()
def held() -> int:
    inside.set()
    release.wait(30)
    return 2

@DBOS.step()
def last() -> int:
    return 3

@DBOS.workflow()
def wf() -> int:
    return first() + held() + last()

DBOS(config=DBOSConfig(name="left-running", system_database_url=sys.argv[1], application_version="v1"))
DBOS.launch()
with SetWorkflowID("left-running"):
    handle = DBOS.start_workflow(wf)
assert inside.wait(30)
DBOS.destroy(workflow_completion_timeout_sec=0.2)  # gives up on the held step
release.set()
try:
    handle.get_result()
except Exception as exc:
    print("BODY_ENDED", type(exc).__name__, flush=True)
client = DBOSClient(system_database_url=sys.argv[1])
print("STATUS", client.retrieve_workflow("left-running").get_status().status, flush=True)
client.destroy()
"""


def test_a_workflow_still_running_after_destroy_stays_pending(sys_db_url: str) -> None:
    # Its later steps are refused once DBOS is gone: that is no outcome to record.
    done = subprocess.run([sys.executable, "-c", LEFT_RUNNING, sys_db_url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "BODY_ENDED DBOSException" in done.stdout, done.stdout
    assert "STATUS PENDING" in done.stdout, done.stdout
