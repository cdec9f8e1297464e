"""The worker of the soak (tests/chaos/test_soak.py), run as several processes.

    python soak_app.py SYS_URL LEDGER_URL EXECUTOR_ID

It serves the shared queue until its stdin closes. SYS_URL goes through the
fault proxy; LEDGER_URL, the application database, does not, so what the
ledger records is what happened. Each job records, in the ledger:

* ``executions``: every run of each step, with a fresh token the step returns.
  The token in the workflow's result is the run that was checkpointed: any
  run of that step recorded after it is a checkpointed step run again.
* ``holds``: when each run of the middle step entered and left (a process
  killed inside it never leaves: the test ends it at the kill).
* ``completions``: written by a ``@DBOS.transaction``, exactly once per job.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
import uuid
from typing import Any, List

import psycopg2

from dbos import DBOS, DBOSConfig, Queue

QUEUE = "soak"
CONCURRENCY = 6
APP_VERSION = "soak-v1"

LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (id BIGSERIAL PRIMARY KEY, wf TEXT NOT NULL, step INT NOT NULL,
    token TEXT NOT NULL, pid INT NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS holds (id BIGSERIAL PRIMARY KEY, wf TEXT NOT NULL, pid INT NOT NULL,
    entered TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(), left_at TIMESTAMPTZ);
CREATE TABLE IF NOT EXISTS completions (wf TEXT NOT NULL, pid INT NOT NULL);
CREATE TABLE IF NOT EXISTS kills (pid INT NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp());
"""

queue = Queue(QUEUE, concurrency=CONCURRENCY, polling_interval_sec=0.2)
_local = threading.local()
ledger_url = ""  # set by main(): importing this module (the test does) reads no arguments


def ledger() -> Any:
    """One autocommit connection per thread: each row is committed when written."""
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg2.connect(ledger_url)
        conn.autocommit = True
        _local.conn = conn
    return conn


def record(step: int) -> str:
    token = uuid.uuid4().hex
    with ledger().cursor() as cur:
        cur.execute("INSERT INTO executions (wf, step, token, pid) VALUES (%s, %s, %s, %s)",
                    (DBOS.workflow_id, step, token, os.getpid()))
    return token


@DBOS.step()
def first() -> str:
    return record(1)


@DBOS.step()
def hold() -> str:
    token = record(2)
    with ledger().cursor() as cur:
        cur.execute("INSERT INTO holds (wf, pid) VALUES (%s, %s) RETURNING id", (DBOS.workflow_id, os.getpid()))
        hold_id = cur.fetchone()[0]
    time.sleep(random.uniform(0.05, 0.4))  # a job that takes a while, so jobs overlap
    with ledger().cursor() as cur:
        cur.execute("UPDATE holds SET left_at = clock_timestamp() WHERE id = %s", (hold_id,))
    return token


@DBOS.transaction()
def complete() -> None:
    DBOS.sql_session.execute_sql("INSERT INTO completions VALUES (%s, %s)", (DBOS.workflow_id, os.getpid()))


@DBOS.workflow()
def soak_job() -> List[str]:
    tokens = [first(), hold()]
    complete()
    return tokens


def main() -> None:
    global ledger_url
    sys_url, ledger_url, executor_id = sys.argv[1:4]
    DBOS(config=DBOSConfig(name="soak-app", system_database_url=sys_url, application_database_url=ledger_url,
                           application_datasource="peewee", application_version=APP_VERSION,
                           executor_id=executor_id))
    DBOS.launch()
    print("READY", flush=True)
    sys.stdin.read()  # until the test closes it
    DBOS.destroy(workflow_completion_timeout_sec=10)
    print("STOPPED", flush=True)


if __name__ == "__main__":
    main()
