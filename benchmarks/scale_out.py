"""Scale-out: N worker processes sharing one queue on one PostgreSQL, and the
server's cost per workflow and per step.

    .venv/bin/python benchmarks/scale_out.py [--jobs 2000] [--workers 1 2 4]
        [--steps 1 3] [--reps 3] [--json-out FILE]

Runs against a private throwaway cluster (pgcluster.py), never the machine's
own. Each repetition, on a fresh database:
1. N worker processes (this file, ``_worker``) construct DBOS and wait;
2. a DBOSClient in this process enqueues the jobs one by one (timed on
   its own);
3. every worker launches at once, and the clock runs until the last job's
   row is SUCCESS (its ``updated_at``, so the observer's poll interval adds
   nothing);
4. the server's counters are read: statements grouped by text from
   pg_stat_statements, WAL bytes from ``pg_current_wal_lsn()``, WAL syncs
   from pg_stat_wal, and the CPU time of the cluster's processes from /proc.
The observer connects as a role of its own, so its polling is not counted.
Figures are medians over the repetitions; see SCALE_OUT.md for a run and the
projection drawn from it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from contextlib import closing
from typing import IO, Any, Dict, List, Tuple

import pgcluster
from pgcluster import OBSERVER, PrivateCluster, Statement

from dbos import DBOS, DBOSClient, DBOSConfig, EnqueueOptions, Queue

QUEUE = "scale_queue"
JOB_NAMES = {1: "scale_one_step", 3: "scale_three_steps"}
READY = "SCALE_READY"
Run = Dict[str, Any]


@DBOS.step()
def scale_step(x: int) -> int:
    return x


@DBOS.workflow(name=JOB_NAMES[1])
def one_step_job(x: int) -> int:
    return scale_step(x)


@DBOS.workflow(name=JOB_NAMES[3])
def three_step_job(x: int) -> int:
    return scale_step(scale_step(scale_step(x)))


# ---------------------------------------------------------------- worker process

def worker_main(url: str, executor_id: str, poll: float) -> None:
    """One worker: construct, say ready, launch on GO, shut down on STOP."""
    Queue(QUEUE, polling_interval_sec=poll)
    config = DBOSConfig(name="dbos-scale-out", system_database_url=url, application_version="scale",
                        log_level="WARNING", executor_id=executor_id)
    DBOS(config=config)
    print(READY, flush=True)
    sys.stdin.readline()
    DBOS.launch()
    sys.stdin.readline()
    DBOS.destroy()


def start_worker(url: str, index: int, poll: float) -> "subprocess.Popen[str]":
    argv = [sys.executable, os.path.abspath(__file__), "_worker", url, f"worker-{index}", str(poll)]
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def tell(procs: "List[subprocess.Popen[str]]", word: str) -> None:
    for proc in procs:
        stdin: IO[str] = proc.stdin  # type: ignore[assignment]
        stdin.write(word + "\n")
        stdin.flush()


def await_ready(proc: "subprocess.Popen[str]") -> None:
    line = proc.stdout.readline() if proc.stdout else ""
    if line.strip() != READY:
        raise RuntimeError(f"worker {proc.pid} did not start (printed {line!r}); see its stderr above")


def stop_workers(procs: "List[subprocess.Popen[str]]") -> None:
    try:
        tell([p for p in procs if p.poll() is None], "STOP")
    except OSError:
        pass
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- one repetition

class Observer:
    """The benchmark's own connection to the run's database (a separate role)."""

    def __init__(self, cluster: PrivateCluster, database: str) -> None:
        self.cluster = cluster
        self.database = database
        self.conn = cluster.connect(database, OBSERVER)

    def statements(self) -> Dict[str, Statement]:
        return pgcluster.statements(self.cluster, self.conn, self.database)

    def progress(self) -> Tuple[int, int]:
        with self.conn.cursor() as cur:
            cur.execute("SELECT count(*) FILTER (WHERE status = 'SUCCESS'), "
                        "count(*) FILTER (WHERE status IN ('ERROR', 'CANCELLED', "
                        "'MAX_RECOVERY_ATTEMPTS_EXCEEDED')) FROM dbos.workflow_status")
            done, failed = cur.fetchone()
        return int(done), int(failed)

    def wait_done(self, jobs: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            done, failed = self.progress()
            if failed:
                raise RuntimeError(f"{failed} jobs failed")
            if done >= jobs:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done} of {jobs} jobs done after {timeout_s} s")
            time.sleep(0.02)

    def one_value(self, sql: str) -> Any:
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone()[0]

    def per_executor(self) -> Dict[str, int]:
        with self.conn.cursor() as cur:
            cur.execute("SELECT executor_id, count(*) FROM dbos.workflow_status GROUP BY 1 ORDER BY 1")
            return {str(k): int(v) for k, v in cur.fetchall()}


def diff(after: Dict[str, Statement], before: Dict[str, Statement]) -> Dict[str, Statement]:
    out: Dict[str, Statement] = {}
    for key, s in after.items():
        b = before.get(key, Statement(key))
        if s.calls > b.calls:
            out[key] = Statement(key, s.calls - b.calls, s.exec_ms - b.exec_ms, s.rows - b.rows)
    return out


def enqueue_all(client: DBOSClient, steps: int, jobs: int) -> float:
    """Enqueue the jobs one by one; seconds per job."""
    options: EnqueueOptions = {"queue_name": QUEUE, "workflow_name": JOB_NAMES[steps]}
    started = time.perf_counter()
    for i in range(jobs):
        client.enqueue(options, i)
    return (time.perf_counter() - started) / jobs


def run_once(cluster: PrivateCluster, steps: int, workers: int, rep: int, args: argparse.Namespace) -> Run:
    database = f"scale_{steps}s_{workers}w_{rep}"
    url = cluster.url(database)
    subprocess.run([sys.executable, "-m", "dbos", "migrate", "-s", url], check=True, capture_output=True)
    procs = [start_worker(url, i, args.poll) for i in range(workers)]
    try:
        for proc in procs:
            await_ready(proc)
        observer = Observer(cluster, database)
        # Open until the end: the server's CPU is read from live processes,
        # so the client's backend must outlive the last reading.
        client = DBOSClient(system_database_url=url)
        try:
            run = measure(observer, client, procs, steps, args)
        finally:
            client.destroy()
    finally:
        stop_workers(procs)
    time.sleep(0.5)  # exited backends flush their WAL counters to pg_stat_wal
    run["wal"] = {k: v - run["wal0"][k] for k, v in pgcluster.wal_stats(observer.conn).items()}
    observer.conn.close()
    with closing(cluster.connect("postgres")) as conn, conn.cursor() as cur:
        cur.execute(f'DROP DATABASE "{database}" WITH (FORCE)')
    return run


def measure(observer: Observer, client: DBOSClient, procs: "List[subprocess.Popen[str]]", steps: int,
            args: argparse.Namespace) -> Run:
    cluster = observer.cluster
    base = pgcluster.reset_statements(cluster, observer.conn, observer.database)
    run: Run = {"steps": steps, "workers": len(procs), "jobs": args.jobs,
                "wal0": pgcluster.wal_stats(observer.conn)}
    lsn, cpu0 = pgcluster.wal_lsn(observer.conn), cluster.server_cpu_s()
    run["enqueue_ms"] = enqueue_all(client, steps, args.jobs) * 1000
    enqueued = diff(observer.statements(), base)
    run["enqueue_wal_bytes"] = pgcluster.wal_bytes_since(observer.conn, lsn)
    cpu1, app0 = cluster.server_cpu_s(), sum(pgcluster.process_cpu_s(p.pid) for p in procs)
    go = time.time()
    tell(procs, "GO")
    observer.wait_done(args.jobs, args.timeout)
    end_ms = observer.one_value("SELECT max(updated_at) FROM dbos.workflow_status")
    run["elapsed_s"] = int(end_ms) / 1000 - go
    run["jobs_per_s"] = args.jobs / run["elapsed_s"]
    run["server_cpu_s"] = cluster.server_cpu_s() - cpu0
    run["enqueue_server_cpu_s"] = cpu1 - cpu0
    run["app_cpu_s"] = sum(pgcluster.process_cpu_s(p.pid) for p in procs) - app0
    run["wal_bytes"] = pgcluster.wal_bytes_since(observer.conn, lsn)
    run["connections"] = int(observer.one_value(
        f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{observer.database}' AND usename = 'postgres'"))
    run["per_executor"] = observer.per_executor()
    every = diff(observer.statements(), base)
    run["statements"] = {k: vars(s) for k, s in every.items()}
    run["enqueue_statements"] = sum(s.calls for s in enqueued.values())
    return run


# ---------------------------------------------------------------- summary

def per_workflow(run: Run) -> Dict[str, float]:
    """One repetition's figures, per workflow where that is what they mean."""
    n = run["jobs"]
    stmts = run["statements"].values()
    return {
        "jobs_per_s": run["jobs_per_s"],
        "enqueue_ms": run["enqueue_ms"],
        "statements": sum(s["calls"] for s in stmts) / n,
        "enqueue_statements": run["enqueue_statements"] / n,
        "exec_ms": sum(s["exec_ms"] for s in stmts) / n,
        "wal_bytes": run["wal_bytes"] / n,
        "enqueue_wal_bytes": run["enqueue_wal_bytes"] / n,
        "wal_fpi": run["wal"]["wal_fpi"] / n,
        "wal_syncs": run["wal"]["wal_sync"] / n,
        "ms_per_sync": run["wal"]["wal_sync_ms"] / max(run["wal"]["wal_sync"], 1),
        "server_cpu_ms": run["server_cpu_s"] * 1000 / n,
        "app_cpu_ms": run["app_cpu_s"] * 1000 / n,
        "connections": run["connections"],
    }


def medians(runs: List[Run]) -> Dict[str, float]:
    rows = [per_workflow(r) for r in runs]
    return {k: statistics.median(row[k] for row in rows) for k in rows[0]}


COLUMNS = [("jobs_per_s", "jobs/s", "{:.0f}"), ("enqueue_ms", "enq ms", "{:.2f}"),
           ("statements", "stmts", "{:.2f}"), ("exec_ms", "exec ms", "{:.3f}"),
           ("wal_bytes", "WAL B", "{:.0f}"), ("wal_fpi", "FPI", "{:.3f}"),
           ("wal_syncs", "syncs", "{:.2f}"), ("ms_per_sync", "ms/sync", "{:.3f}"),
           ("server_cpu_ms", "srv CPU ms", "{:.3f}"),
           ("app_cpu_ms", "app CPU ms", "{:.3f}"), ("connections", "conns", "{:.0f}")]


def print_table(summary: Dict[str, Dict[str, float]]) -> None:
    print("per workflow, medians (enqueue included in statements, WAL and server CPU):")
    print(f"{'config':<16}" + "".join(f"{title:>11}" for _, title, _ in COLUMNS))
    for config, figures in summary.items():
        print(f"{config:<16}" + "".join(f"{fmt.format(figures[key]):>11}" for key, _, fmt in COLUMNS))


def print_statements(run: Run) -> None:
    n = run["jobs"]
    print(f"\nstatements of one run, {run['steps']}-step jobs, {run['workers']} worker(s), per workflow:")
    print(f"{'calls':>7} {'ms/call':>8} {'rows/call':>9}  statement")
    ranked = sorted(run["statements"].values(), key=lambda s: -s["calls"])
    for s in ranked[:14]:
        text = s["query"] if len(s["query"]) <= 110 else s["query"][:107] + "..."
        print(f"{s['calls'] / n:>7.3f} {s['exec_ms'] / s['calls']:>8.4f} {s['rows'] / s['calls']:>9.2f}  {text}")


def per_step(summary: Dict[str, Dict[str, float]], workers: int) -> Dict[str, float]:
    one, three = summary.get(f"1-step x{workers}"), summary.get(f"3-step x{workers}")
    if not one or not three:
        return {}
    keys = ("statements", "exec_ms", "wal_bytes", "wal_syncs", "server_cpu_ms", "app_cpu_ms")
    return {k: (three[k] - one[k]) / 2 for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, nargs="+", choices=[1, 3], default=[1, 3])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--poll", type=float, default=0.1, help="the queue's polling interval (s)")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--json-out", help="write every repetition's figures here")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the private cluster is stopped and deleted.
    signal.signal(signal.SIGTERM, _interrupt)
    with PrivateCluster() as cluster:
        print(f"private cluster on port {cluster.port}; statements from {cluster.statements_source}", flush=True)
        runs = run_all(cluster, args)
    report(runs, args)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt()


def run_all(cluster: PrivateCluster, args: argparse.Namespace) -> Dict[str, List[Run]]:
    runs: Dict[str, List[Run]] = {}
    for rep in range(args.reps):
        for steps in args.steps:
            for workers in args.workers:
                run = run_once(cluster, steps, workers, rep, args)
                runs.setdefault(f"{steps}-step x{workers}", []).append(run)
                print(f"  rep {rep}: {steps}-step jobs, {workers} worker(s): {run['jobs_per_s']:.0f} jobs/s "
                      f"{run['per_executor']}", flush=True)
    return runs


def report(runs: Dict[str, List[Run]], args: argparse.Namespace) -> None:
    summary = {config: medians(rs) for config, rs in runs.items()}
    print()
    print_table(summary)
    step = per_step(summary, min(args.workers))
    if step:
        print("\nper step ((3-step - 1-step) / 2, fewest workers): "
              + ", ".join(f"{k} {v:.3f}" for k, v in step.items()))
    for config, rs in runs.items():
        if config.endswith(f"x{min(args.workers)}"):
            print_statements(rs[len(rs) // 2])
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"summary": summary, "per_step": step, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "_worker":
        worker_main(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        try:
            main()
        except KeyboardInterrupt:
            sys.exit("interrupted; the private cluster was stopped and deleted")
