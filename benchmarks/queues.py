"""Queue throughput, peak threads and peak memory while draining 2,000 jobs.

    python benchmarks/queues.py --backend sqlite
    python benchmarks/queues.py --backend postgres [--url postgresql://...]

Each job is a workflow with one step. Jobs are enqueued up front, then the
clock runs until every one has finished. Repeated --reps times; medians.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import threading
import time
import uuid
from typing import Dict, List

from dbos import DBOS, DBOSConfig, Queue

JOBS = 2000
queue = Queue("bench", polling_interval_sec=0.1)


@DBOS.step()
def work(i: int) -> int:
    return i + 1


@DBOS.workflow()
def job(i: int) -> int:
    return work(i)


class ThreadPeak(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = threading.active_count()
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.005):
            self.peak = max(self.peak, threading.active_count())


def drain(jobs: int) -> Dict[str, float]:
    sampler = ThreadPeak()
    sampler.start()
    started = time.perf_counter()
    handles = [queue.enqueue(job, i) for i in range(jobs)]
    enqueued = time.perf_counter()
    for handle in handles:
        handle.get_result(polling_interval_sec=0.05)
    elapsed = time.perf_counter() - started
    sampler.halt.set()
    sampler.join()
    return {
        "jobs per second (enqueue + run)": jobs / elapsed,
        "enqueue per job (ms)": (enqueued - started) * 1000 / jobs,
        "peak threads": float(sampler.peak),
    }


def default_url(backend: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{os.path.join(tempfile.mkdtemp(), 'bench.sqlite')}"
    return f"postgresql://postgres@localhost:5432/dbos_bench_{uuid.uuid4().hex[:8]}"


def run(url: str, jobs: int, reps: int) -> Dict[str, float]:
    DBOS(config=DBOSConfig(name="bench-queues", system_database_url=url, application_version="bench"))
    DBOS.reset_system_database()
    DBOS.launch()
    try:
        results: List[Dict[str, float]] = [drain(jobs) for _ in range(reps)]
    finally:
        DBOS.destroy()
        DBOS.reset_system_database(system_database_url=url)
    figures = {k: statistics.median(r[k] for r in results) for k in results[0]}
    figures["peak memory (MB, whole process)"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--url")
    parser.add_argument("--jobs", type=int, default=JOBS)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = run(args.url or default_url(args.backend), args.jobs, args.reps)
    if args.json:
        print(json.dumps({"backend": args.backend, "jobs": args.jobs, "medians": figures}, indent=2))
        return
    print(f"{'figure (' + args.backend + f', {args.jobs} jobs)':<45} {'median':>10}")
    for name, value in figures.items():
        print(f"{name:<45} {value:>10.1f}")


if __name__ == "__main__":
    main()
