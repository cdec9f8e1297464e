"""How fast the dashboard lists workflows out of 100,000 (issue 18's targets).

    .venv/bin/python benchmarks/dashboard_list.py --backend sqlite
    .venv/bin/python benchmarks/dashboard_list.py --backend postgres

Fills a fresh system database with ``--rows`` workflow rows (statuses and
twenty names mixed as a busy application's would be), serves it with
``dbos dashboard``'s server, and times the page's own requests over HTTP:
the newest 50, the newest 50 of one status and one name, and the next page
of that (keyset). Prints the median and the 95th percentile of each against
its target (100 ms unfiltered, 200 ms filtered).
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import urllib.request
from typing import Any, Dict, List, Tuple

import dbadmin
from dbos._ops.dashboard_server import DashboardServer
from dbos._ops.management import Management
from dbos._serialization import Codec
from dbos._sysdb import SystemDatabase

BATCH = 5_000
NAMES = [f"orders.step_{i}" for i in range(20)]
# Out of 100: how often each status occurs.
STATUSES = ["SUCCESS"] * 90 + ["ERROR"] * 5 + ["PENDING"] * 3 + ["ENQUEUED"] * 2
COLUMNS = ("workflow_uuid", "status", "name", "created_at", "updated_at", "application_version",
           "executor_id", "queue_name", "completed_at")


def rows(count: int, start_ms: int) -> List[Tuple[Any, ...]]:
    found = []
    for i in range(count):
        status = STATUSES[(i * 37) % 100]
        created = start_ms + i * 10
        found.append((f"wf-{i:07d}", status, NAMES[(i * 7) % len(NAMES)], created, created + 5, "v1",
                      f"exec-{i % 4}", "orders" if status == "ENQUEUED" else None,
                      created + 5 if status in ("SUCCESS", "ERROR") else None))
    return found


def fill(sysdb: SystemDatabase, count: int) -> None:
    """Insert the rows in batches, straight through the driver."""
    sqlite = sysdb.url.is_sqlite
    table = "workflow_status" if sqlite else f'"{sysdb.schema}".workflow_status'
    marks = ", ".join(["?" if sqlite else "%s"] * len(COLUMNS))
    sql = f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({marks})"
    everything = rows(count, int(time.time() * 1000) - count * 10)
    conn = _connect(sysdb)
    try:
        cursor = conn.cursor()
        for first in range(0, count, BATCH):
            cursor.executemany(sql, everything[first:first + BATCH])
        conn.commit()
        if not sqlite:
            cursor.execute(f"ANALYZE {table}")
            conn.commit()
    finally:
        conn.close()


def _connect(sysdb: SystemDatabase) -> Any:
    url = sysdb.url.render()
    if sysdb.url.is_sqlite:
        import sqlite3
        return sqlite3.connect(dbadmin.sqlite_path(url))
    import psycopg2
    return psycopg2.connect(url)


def timed(base: str, body: Dict[str, Any], repeat: int) -> Tuple[List[float], Dict[str, Any]]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    times: List[float] = []
    answer: Dict[str, Any] = {}
    for _ in range(repeat):
        request = urllib.request.Request(base + "/dashboard/api/workflows", data=json.dumps(body).encode(),
                                         method="POST", headers={"Content-Type": "application/json"})
        began = time.perf_counter()
        with opener.open(request, timeout=60) as response:
            answer = json.loads(response.read())
        times.append((time.perf_counter() - began) * 1000)
    return times, answer


def report(label: str, times: List[float], target_ms: float, found: int) -> None:
    median = statistics.median(times)
    p95 = sorted(times)[int(len(times) * 0.95) - 1]
    verdict = "met" if median < target_ms else "NOT met"
    print(f"{label:<44} {found:>4} rows  median {median:7.1f} ms  p95 {p95:7.1f} ms  "
          f"target {target_ms:.0f} ms: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--url", help="base URL (default: a file here, or the local PostgreSQL)")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    base = args.url or ("sqlite:///dashboard_bench.sqlite" if args.backend == "sqlite" else dbadmin.DEFAULT_POSTGRES_URL)
    url = dbadmin.url_for(args.backend, base, "dashboard")
    dbadmin.drop(url)
    sysdb = SystemDatabase(url)
    sysdb.migrate()
    try:
        fill(sysdb, args.rows)
        run(sysdb, args)
    finally:
        sysdb.close()
        dbadmin.drop(url)


def run(sysdb: SystemDatabase, args: argparse.Namespace) -> None:
    server = DashboardServer("127.0.0.1", 0, Management(sysdb, Codec()))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    print(f"{args.backend}: {args.rows} workflows, {args.repeat} requests each")
    try:
        times, answer = timed(base, {"limit": 50}, args.repeat)
        report("newest 50", times, 100, len(answer["workflows"]))
        filters = {"status": "ERROR", "name": NAMES[3]}
        times, answer = timed(base, {"limit": 50, "filters": filters}, args.repeat)
        report("newest 50 of one status and one name", times, 200, len(answer["workflows"]))
        times, answer = timed(base, {"limit": 50, "filters": filters, "after": answer["after"]}, args.repeat)
        report("the next page of those (keyset)", times, 200, len(answer["workflows"]))
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
