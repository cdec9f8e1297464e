"""How fast the workflow list answers over a big system database.

Fills a fresh system database with 100,000 workflows (one bulk insert, not
100,000 starts), then times the two listings an operator's dashboard asks
for most: the newest 50, and the newest 50 of one status and one name
(a common pair, and a rare one whose rows are all old: the hard case for a
database without an index that fits). Prints the median of each, against
the targets of issue 18 (100 ms and 200 ms).

    .venv/bin/python benchmarks/list_speed.py --backend sqlite
    .venv/bin/python benchmarks/list_speed.py --backend postgres
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import dbadmin  # noqa: E402

from dbos import DBOSClient  # noqa: E402

NAMES = [f"workflow_{i}" for i in range(20)]
# Most rows are finished, as in a system database that has run for a while.
STATUSES = ["SUCCESS"] * 16 + ["ERROR", "ERROR", "PENDING", "ENQUEUED"]
COLUMNS = ("workflow_uuid", "status", "name", "created_at", "updated_at", "application_version",
           "executor_id", "queue_name")
TARGETS_MS = {"newest 50": 100.0, "status + name, newest 50": 200.0, "rare status + name": 200.0}
RARE = 100  # rows of the rare name, the oldest of all


def rows(count: int) -> List[Tuple[Any, ...]]:
    """``count`` workflow rows, one a millisecond, the newest now."""
    rng = random.Random(18)
    start = int(time.time() * 1000) - count
    out = []
    for i in range(count):
        status = "SUCCESS" if i < RARE else rng.choice(STATUSES)
        name = "workflow_rare" if i < RARE else rng.choice(NAMES)
        queue = "jobs" if status == "ENQUEUED" else None
        out.append((f"wf-{i:07d}", status, name, start + i, start + i, "v1", "local", queue))
    return out


def fill_sqlite(url: str, data: Sequence[Tuple[Any, ...]]) -> None:
    conn = sqlite3.connect(dbadmin.sqlite_path(url))
    with conn:
        marks = ", ".join("?" for _ in COLUMNS)
        conn.executemany(f"INSERT INTO workflow_status ({', '.join(COLUMNS)}) VALUES ({marks})", data)
    conn.close()


def fill_postgres(url: str, data: Sequence[Tuple[Any, ...]]) -> None:
    import psycopg2
    from psycopg2.extras import execute_values

    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        execute_values(cur, f"INSERT INTO dbos.workflow_status ({', '.join(COLUMNS)}) VALUES %s",
                       data, page_size=5000)
        cur.execute("ANALYZE dbos.workflow_status")
    conn.close()


def median_ms(call: Callable[[], Any], repeat: int) -> float:
    call()  # warm: the first query pays for connecting and planning
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def measure(url: str, repeat: int) -> Dict[str, float]:
    client = DBOSClient(system_database_url=url)
    # As the admin server and the dashboard list: a page of records, without inputs and outputs.
    page: Dict[str, Any] = {"limit": 50, "sort_desc": True, "load_input": False, "load_output": False}
    filtered = {"status": "ERROR", "name": "workflow_7", **page}
    rare = {"status": "SUCCESS", "name": "workflow_rare", **page}
    try:
        found = client.list_workflows(**filtered)
        assert len(found) == 50 and all(w.status == "ERROR" and w.name == "workflow_7" for w in found)
        return {
            "newest 50": median_ms(lambda: client.list_workflows(**page), repeat),
            "status + name, newest 50": median_ms(lambda: client.list_workflows(**filtered), repeat),
            "rare status + name": median_ms(lambda: client.list_workflows(**rare), repeat),
        }
    finally:
        client.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--url", help="a SQLite file URL or a PostgreSQL database URL (dropped and refilled)")
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    if args.url:
        url = args.url
    elif args.backend == "sqlite":
        url = f"sqlite:///{os.path.join(tempfile.gettempdir(), 'dbos_list_speed.sqlite')}"
    else:
        url = "postgresql://postgres@127.0.0.1:5432/dbos_list_speed"
    dbadmin.drop(url)
    creator = DBOSClient(system_database_url=url)
    creator.list_workflows(limit=1)  # the first use creates the database and migrates it
    creator.destroy()
    began = time.perf_counter()
    (fill_sqlite if url.startswith("sqlite:") else fill_postgres)(url, rows(args.count))
    print(f"filled {args.count} workflows in {time.perf_counter() - began:.1f} s ({args.backend})")
    for figure, ms in measure(url, args.repeat).items():
        target = TARGETS_MS[figure]
        print(f"{figure:<28} median {ms:8.2f} ms   target < {target:.0f} ms: {'met' if ms < target else 'MISSED'}")
    dbadmin.drop(url)


if __name__ == "__main__":
    main()
