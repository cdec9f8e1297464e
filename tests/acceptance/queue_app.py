"""A queue-draining app that the acceptance tests run as several processes.

    python queue_app.py enqueue  SYS_URL COUNT
    python queue_app.py work     SYS_URL APP_URL EXECUTOR_ID HANG_AT
    python queue_app.py schedule SYS_URL TICK_FILE EXECUTOR_ID

``enqueue`` puts COUNT jobs (IDs ``job-0000``...) on the shared queue, whose
global concurrency is ``CONCURRENCY``, and exits. ``work`` serves that queue
until its stdin closes. Each job, in the application database:

* enters: under one lock for all processes, adds itself to ``running``,
  raises ``peak`` to the number of rows there, and logs a row in ``starts``;
* holds a moment, so jobs overlap, then leaves ``running``;
* completes in a ``@DBOS.transaction`` (exactly once) that logs ``completions``.

With HANG_AT=n > 0 the n-th job this process starts prints ``HANGING <job>``
and hangs after entering, for the test to kill the process part-way.
``schedule`` runs a workflow every second that appends its tick and executor
to TICK_FILE, until stdin closes.
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import datetime
from typing import Any, Callable, List, Tuple

import psycopg2

from dbos import DBOS, DBOSConfig, Queue, SetWorkflowID

_print_lock = threading.Lock()

QUEUE = "shared-drain"
CONCURRENCY = 5
HOLD_S = 0.01
APP_VERSION = "queue-app-v1"

APP_SCHEMA = """
CREATE TABLE IF NOT EXISTS running (job TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS peak (id INT PRIMARY KEY, value INT NOT NULL);
INSERT INTO peak VALUES (1, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS starts (job TEXT NOT NULL, executor TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS completions (job TEXT NOT NULL, executor TEXT NOT NULL);
"""


class AppDB:
    """One autocommit psycopg2 connection per thread to the application database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()

    def conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg2.connect(self.url)
            self._local.conn = conn
        return conn


class Starts:
    """Counts the jobs this process starts; the hang_at-th one hangs (0: none)."""

    def __init__(self, hang_at: int) -> None:
        self.hang_at = hang_at
        self._count = 0
        self._lock = threading.Lock()

    def next_hangs(self) -> bool:
        with self._lock:
            self._count += 1
            return self._count == self.hang_at


def register_drain(app_url: str, executor: str, hang_at: int) -> Tuple[Queue, Callable[[str], str]]:
    """The queue and the job. Only the modes that use them register them (the
    test imports this module for its constants and must register nothing)."""
    app_db = AppDB(app_url) if app_url else None
    starts = Starts(hang_at)
    queue = Queue(QUEUE, concurrency=CONCURRENCY, polling_interval_sec=0.1)

    @DBOS.step(name="enter")
    def enter(job: str) -> int:
        assert app_db is not None
        conn = app_db.conn()
        with conn, conn.cursor() as cur:  # one transaction, committed on leaving the block
            cur.execute("SELECT pg_advisory_xact_lock(4242)")
            cur.execute("INSERT INTO running VALUES (%s) ON CONFLICT DO NOTHING", (job,))
            cur.execute("SELECT COUNT(*) FROM running")
            now = int(cur.fetchone()[0])
            cur.execute("UPDATE peak SET value = GREATEST(value, %s) WHERE id = 1", (now,))
            cur.execute("INSERT INTO starts VALUES (%s, %s)", (job, executor))
        return now

    @DBOS.step(name="hold_and_leave")
    def hold_and_leave(job: str) -> None:
        assert app_db is not None
        if starts.next_hangs():
            with _print_lock:  # print writes text and newline apart: keep two threads' lines whole
                print(f"HANGING {job}", flush=True)
            threading.Event().wait()  # until killed
        time.sleep(HOLD_S)
        conn = app_db.conn()
        with conn, conn.cursor() as cur:
            cur.execute("DELETE FROM running WHERE job = %s", (job,))

    @DBOS.transaction(name="complete")
    def complete(job: str) -> None:
        DBOS.sql_session.execute_sql("INSERT INTO completions VALUES (%s, %s)", (job, executor))

    @DBOS.workflow(name="drain_job")
    def drain_job(job: str) -> str:
        enter(job)
        hold_and_leave(job)
        complete(job)
        return job

    return queue, drain_job


def register_schedule(tick_file: str, executor: str) -> None:
    @DBOS.scheduled("* * * * * *")
    @DBOS.workflow(name="tick")
    def tick(scheduled_time: datetime, actual_time: datetime) -> None:
        with open(tick_file, "a") as f:  # one short append per line: lines never interleave
            f.write(f"{scheduled_time.isoformat()} {executor} {DBOS.workflow_id}\n")


def config(sys_url: str, executor_id: str, app_url: str = "") -> DBOSConfig:
    cfg = DBOSConfig(name="queue-app", system_database_url=sys_url, application_version=APP_VERSION,
                     executor_id=executor_id)
    if app_url:
        cfg["application_database_url"] = app_url
        cfg["application_datasource"] = "peewee"  # the transaction below uses execute_sql
    return cfg


def serve_until_stdin_closes() -> None:
    print("READY", flush=True)
    sys.stdin.read()  # the test closes our stdin to stop us
    DBOS.destroy()
    print("STOPPED", flush=True)


def main(argv: List[str]) -> None:
    mode, sys_url = argv[0], argv[1]
    if mode == "enqueue":
        queue, drain_job = register_drain("", "enqueuer", 0)
        DBOS(config=config(sys_url, "enqueuer"))
        DBOS.listen_queues([])  # enqueue only: run nothing of the queue here
        DBOS.launch()
        for i in range(int(argv[2])):
            with SetWorkflowID(f"job-{i:04d}"):
                queue.enqueue(drain_job, f"job-{i:04d}")
        print("ENQUEUED", flush=True)
        DBOS.destroy()
    elif mode == "work":
        app_url, executor, hang_at = argv[2], argv[3], int(argv[4])
        register_drain(app_url, executor, hang_at)
        DBOS(config=config(sys_url, executor, app_url))
        DBOS.launch()
        serve_until_stdin_closes()
    elif mode == "schedule":
        register_schedule(argv[2], argv[3])
        DBOS(config=config(sys_url, argv[3]))
        DBOS.launch()
        serve_until_stdin_closes()
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv[1:])
