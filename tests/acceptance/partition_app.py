"""A worker of a partitioned queue kept in the database, run as several processes.

    python partition_app.py SYS_URL COUNTER_FILE EXECUTOR_ID

Registers the queue ``tenants`` (at most ``PARTITION_CONCURRENCY`` running
workflows per partition key, across every process) and serves it until its
stdin closes. Each job records itself in COUNTER_FILE, a SQLite file every
process shares: under one write lock for all of them (``BEGIN IMMEDIATE``)
it joins ``running``, raises its key's ``peak`` to the number of its key's
rows there (and the ``*`` peak to all rows there), and logs its start; it holds a moment, so jobs overlap; then it
leaves ``running`` and logs its completion.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from contextlib import closing

from dbos import DBOS, DBOSConfig

QUEUE = "tenants"
PARTITION_CONCURRENCY = 1
WORKER_CONCURRENCY = 2
HOLD_S = 0.03
APP_VERSION = "partition-app-v1"
ALL_KEYS = "*"  # the peak of every key's jobs together

COUNTER_SCHEMA = """
CREATE TABLE IF NOT EXISTS running (key TEXT NOT NULL, job TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS peak (key TEXT PRIMARY KEY, value INT NOT NULL);
CREATE TABLE IF NOT EXISTS starts (job TEXT NOT NULL, key TEXT NOT NULL, executor TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS completions (job TEXT NOT NULL, executor TEXT NOT NULL);
"""


def locked(path: str) -> "closing[sqlite3.Connection]":
    """A connection whose first statement takes the file's write lock (autocommit otherwise)."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return closing(conn)


def register(counter: str, executor: str) -> None:
    @DBOS.step(name="enter")
    def enter(key: str, job: str) -> None:
        with locked(counter) as conn:
            conn.execute("INSERT INTO running VALUES (?, ?)", (key, job))
            now = conn.execute("SELECT COUNT(*) FROM running WHERE key = ?", (key,)).fetchone()[0]
            everyone = conn.execute("SELECT COUNT(*) FROM running").fetchone()[0]
            for scope, value in ((key, now), (ALL_KEYS, everyone)):
                conn.execute("INSERT INTO peak VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                             "value = MAX(value, excluded.value)", (scope, value))
            conn.execute("INSERT INTO starts VALUES (?, ?, ?)", (job, key, executor))
            conn.execute("COMMIT")

    @DBOS.step(name="leave")
    def leave(key: str, job: str) -> None:
        time.sleep(HOLD_S)
        with locked(counter) as conn:
            conn.execute("DELETE FROM running WHERE key = ? AND job = ?", (key, job))
            conn.execute("INSERT INTO completions VALUES (?, ?)", (job, executor))
            conn.execute("COMMIT")

    @DBOS.workflow(name="tenant_job")
    def tenant_job(key: str, job: str) -> str:
        enter(key, job)
        leave(key, job)
        return job


def main(sys_url: str, counter: str, executor: str) -> None:
    with closing(sqlite3.connect(counter, timeout=30)) as conn:
        conn.executescript(COUNTER_SCHEMA)
    register(counter, executor)
    DBOS(config=DBOSConfig(name="partition-app", system_database_url=sys_url,
                           application_version=APP_VERSION, executor_id=executor))
    DBOS.launch()
    # Every process registers it alike; either may come first.
    # A process runs at most WORKER_CONCURRENCY at once, fewer than there are
    # keys, so the other process always finds a key free and both take part
    # (without it the process whose jobs just finished may win every claim).
    DBOS.register_queue(QUEUE, partition_concurrency=PARTITION_CONCURRENCY, polling_interval_sec=0.05,
                        worker_concurrency=WORKER_CONCURRENCY, on_conflict="always_update")
    print("READY", flush=True)
    sys.stdin.read()  # the test closes our stdin to stop us
    DBOS.destroy()
    print("STOPPED", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
