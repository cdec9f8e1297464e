"""One benchmark workload per process, runnable unchanged under either library.

    PYTHON benchmarks/workloads.py WORKLOAD --url URL [--params JSON]

PYTHON is this project's interpreter or another one with DBOS Transact
installed; the script imports whichever ``dbos`` that interpreter has, and
uses only API both libraries share. It prints one line
``BENCH_RESULT {json}`` with the raw figures of one repetition; bench.py
starts it, alternates the libraries and takes medians. The database at URL
is expected to be fresh (bench.py drops it before each run); the library
creates and migrates it at launch, except in ``floor``, which uses no library.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
import uuid
from typing import IO, Any, Callable, Dict, List, Optional, Tuple

from dbos import DBOS, DBOSConfig, Queue, SetWorkflowID

RESULT_PREFIX = "BENCH_RESULT "
READY_LINE = "BENCH_READY"
Params = Dict[str, Any]
Result = Dict[str, Any]

# Set in the recovery child so its workflows stay PENDING until it is killed.
BLOCK_ENV = "DBOS_BENCH_BLOCK"


# ---------------------------------------------------------------- library setup

def make_config(url: str, poll: Optional[float] = None) -> DBOSConfig:
    """The same configuration for both libraries; only keys both understand.

    A fixed application_version lets the recovering process claim the
    workflows the killed one started (both recover only their own version).
    """
    config = DBOSConfig(name="dbos-bench", system_database_url=url,
                        application_version="bench", log_level="WARNING")
    if poll is not None:
        config["notification_listener_polling_interval_sec"] = poll
    return config


def launch(url: str, poll: Optional[float] = None) -> float:
    """Construct and launch DBOS; return the milliseconds it took."""
    started = time.perf_counter()
    DBOS(config=make_config(url, poll))
    DBOS.launch()
    return (time.perf_counter() - started) * 1000


# ---------------------------------------------------------------- workflows

@DBOS.step()
def noop_step(x: int) -> int:
    return x


@DBOS.workflow()
def zero_steps(x: int) -> int:
    return x


@DBOS.workflow()
def three_steps(x: int) -> int:
    return noop_step(noop_step(noop_step(x)))


@DBOS.workflow()
def k_steps(k: int) -> int:
    for i in range(k):
        noop_step(i)
    return k


@DBOS.workflow()
def queued_job(x: int) -> int:
    return noop_step(x)


_recovered = 0
_recovered_lock = threading.Lock()
_all_recovered = threading.Event()
_recovery_target = 0


@DBOS.step()
def wait_for_release(x: int) -> int:
    """Blocks forever in the recovery child; returns at once once recovered elsewhere."""
    if os.environ.get(BLOCK_ENV):
        threading.Event().wait()
    return x


@DBOS.workflow()
def pending_workflow(x: int) -> int:
    result = wait_for_release(x)
    _count_recovered()
    return result


def _count_recovered() -> None:
    # Counting in the workflow body lets the timer wake without polling the
    # database while recovery runs; the final check below still reads the rows.
    global _recovered
    with _recovered_lock:
        _recovered += 1
        if _recovered >= _recovery_target:
            _all_recovered.set()


@DBOS.workflow()
def echo(rounds: int) -> None:
    """Answer each ping with a pong to the workflow named in it."""
    for _ in range(rounds):
        reply_to = DBOS.recv("ping", timeout_seconds=60)
        DBOS.send(reply_to, "pong", "pong")


@DBOS.workflow()
def pinger(peer: str, rounds: int) -> List[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        DBOS.send(peer, DBOS.workflow_id, "ping")
        DBOS.recv("pong", timeout_seconds=60)
        times.append((time.perf_counter() - started) * 1000)
    return times


@DBOS.workflow()
def announcer(rounds: int) -> None:
    """On each "go", publish the wall-clock time as event e<i>."""
    for i in range(rounds):
        DBOS.recv("go", timeout_seconds=60)
        DBOS.set_event(f"e{i}", time.time())


PEER_ROLES: Dict[str, Callable[[int], None]] = {"echo": echo, "announcer": announcer}


# ---------------------------------------------------------------- measuring helpers

def timed_calls(fn: Callable[[int], int], count: int, latencies: List[float]) -> float:
    """Call ``fn`` ``count`` times, appending each latency (ms); return the total seconds."""
    started = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        fn(i)
        latencies.append((time.perf_counter() - t0) * 1000)
    return time.perf_counter() - started


class ProcSampler(threading.Thread):
    """Peak OS threads and resident memory of this process, read from /proc.

    /proc counts every thread (native ones too), which threading.active_count
    would miss.
    """

    def __init__(self, period: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.period = period
        self.peak_threads = 0
        self.peak_rss_kb = 0
        self.halt = threading.Event()

    def sample(self) -> None:
        threads, rss = read_proc_status()
        self.peak_threads = max(self.peak_threads, threads)
        self.peak_rss_kb = max(self.peak_rss_kb, rss)

    def run(self) -> None:
        self.sample()
        while not self.halt.wait(self.period):
            self.sample()

    def stop(self) -> None:
        self.halt.set()
        self.join()
        self.sample()


def read_proc_status() -> Tuple[int, int]:
    threads = rss = 0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                threads = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return threads, rss


def pending_count() -> int:
    return len(DBOS.list_workflows(status="PENDING", load_input=False, load_output=False))


def spawn_self(workload: str, url: str, params: Params,
               env: Optional[Dict[str, str]] = None) -> "subprocess.Popen[str]":
    """Start this script again (same interpreter, so the same library) as a helper process."""
    return subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), workload, "--url", url,
         "--params", json.dumps(params)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


# ---------------------------------------------------------------- workloads

def floor(url: str, p: Params) -> Result:
    """Single-row INSERT + COMMIT with the driver and durability settings our library uses."""
    import dbadmin  # only under our interpreter: it may need psycopg2

    dbadmin.create(url)
    if url.startswith("sqlite:"):
        result = {"floor_ms": _sqlite_floor(dbadmin.sqlite_path(url), "wal", p["commits"])}
        # DBOS Transact leaves SQLite in its default rollback-journal mode:
        # shown for context, since its commits pay for that mode.
        dbadmin.drop(url)
        result["floor_rollback_ms"] = _sqlite_floor(dbadmin.sqlite_path(url), "delete", p["commits"])
        return result
    return {"floor_ms": _postgres_floor(url, p["commits"])}


def _sqlite_floor(path: str, journal: str, commits: int) -> float:
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA journal_mode = {journal}")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE floor (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
    times = []
    for i in range(commits):
        t0 = time.perf_counter()
        # BEGIN IMMEDIATE, as the library takes the write lock up front.
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO floor (payload) VALUES (?)", (uuid.uuid4().hex,))
        conn.execute("COMMIT")
        times.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return statistics.median(times)


def _postgres_floor(url: str, commits: int) -> float:
    import psycopg2

    conn = psycopg2.connect(url)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE floor (id BIGSERIAL PRIMARY KEY, payload TEXT NOT NULL)")
    conn.commit()
    times = []
    with conn.cursor() as cur:
        for i in range(commits):
            t0 = time.perf_counter()
            cur.execute("INSERT INTO floor (payload) VALUES (%s)", (uuid.uuid4().hex,))
            conn.commit()
            times.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return statistics.median(times)


def sequential(url: str, p: Params) -> Result:
    """0-step and 3-step workflows, one after another, in alternating batches."""
    launch(url)
    for i in range(p["warmup"]):
        zero_steps(i)
        three_steps(i)
    lat0: List[float] = []
    lat3: List[float] = []
    total0 = total3 = 0.0
    # Alternating batches spread any drift (database growth, other load)
    # evenly over both kinds, so their difference is the steps' cost.
    for _ in range(p["batches"]):
        total0 += timed_calls(zero_steps, p["per_batch"], lat0)
        total3 += timed_calls(three_steps, p["per_batch"], lat3)
    return {"seq0_ms": statistics.median(lat0), "seq0_wps": len(lat0) / total0,
            "seq3_ms": statistics.median(lat3), "seq3_wps": len(lat3) / total3}


def cpu(url: str, p: Params) -> Result:
    """CPU time (this process's, every thread) per empty workflow and per step, run sequentially."""
    launch(url)
    for _ in range(p["warmup"]):
        zero_steps(0)
        k_steps(p["steps"])
    empty = stepped = 0.0
    # Alternating batches, as in ``sequential``, so drift falls on both kinds.
    for _ in range(p["batches"]):
        empty += _cpu_seconds(lambda: zero_steps(0), p["per_batch"])
        stepped += _cpu_seconds(lambda: k_steps(p["steps"]), p["per_batch"])
    count = p["batches"] * p["per_batch"]
    per_wf, per_stepped = empty / count, stepped / count
    return {"cpu_wf_us": per_wf * 1e6, "cpu_step_us": (per_stepped - per_wf) / p["steps"] * 1e6}


def _cpu_seconds(call: Callable[[], Any], count: int) -> float:
    started = time.process_time()
    for _ in range(count):
        call()
    return time.process_time() - started


def threads(url: str, p: Params) -> Result:
    """3-step workflows called from N threads at once, for a fixed window each."""
    launch(url)
    for i in range(p["warmup"]):
        three_steps(i)
    return {f"thr{n}_wps": _throughput(n, p["window_s"]) for n in p["threads"]}


def _throughput(n_threads: int, window_s: float) -> float:
    counts = [0] * n_threads
    ends = [0.0] * n_threads
    errors: List[BaseException] = []
    gate = threading.Barrier(n_threads + 1)
    deadline: List[float] = []

    def worker(k: int) -> None:
        gate.wait()
        try:
            while time.perf_counter() < deadline[0]:
                three_steps(k)
                counts[k] += 1
        except BaseException as exc:  # surfaced below rather than lost in the thread
            errors.append(exc)
        ends[k] = time.perf_counter()

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for t in pool:
        t.start()
    started = time.perf_counter()
    deadline.append(started + window_s)
    gate.wait()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    # Workflows still running at the deadline finish after it: count the
    # time until the last one ended, not the nominal window.
    return sum(counts) / (max(ends) - started)


def _declare_queue(url: str, name: str, poll: float) -> Queue:
    """A queue declared here, not at import, so that no other workload runs
    a queue poller; then launch. DBOS Transact 3.x has queues only in the
    database, registered once launched."""
    try:
        declared = Queue(name, polling_interval_sec=poll)
    except Exception:  # 3.x: "Queue objects cannot be constructed directly"
        launch(url)
        return DBOS.register_queue(name, polling_interval_sec=poll)
    launch(url)
    return declared


def queue(url: str, p: Params) -> Result:
    """Enqueue N one-step jobs and wait for all; jobs/s, peak threads and RSS."""
    bench_queue = _declare_queue(url, "bench_queue", p["poll"])
    sampler = ProcSampler()
    sampler.start()
    started = time.perf_counter()
    handles = [bench_queue.enqueue(queued_job, i) for i in range(p["jobs"])]
    enqueued = time.perf_counter()
    for handle in handles:
        handle.get_result(polling_interval_sec=p["result_poll"])
    elapsed = time.perf_counter() - started
    sampler.stop()
    return {"queue_jps": p["jobs"] / elapsed,
            "queue_enqueue_ms": (enqueued - started) * 1000 / p["jobs"],
            "queue_threads": sampler.peak_threads,
            "queue_rss_mb": sampler.peak_rss_kb / 1024}


def recovery(url: str, p: Params) -> Result:
    """Kill -9 a process holding N PENDING workflows, then time recovering them here."""
    global _recovery_target
    _kill_child_when_pending(url, p)
    _recovery_target = p["workflows"]
    DBOS(config=make_config(url))
    started = time.perf_counter()
    DBOS.launch()
    launched = time.perf_counter()
    if not _all_recovered.wait(p["timeout_s"]):
        raise TimeoutError(f"only {_recovered} of {p['workflows']} recovered in {p['timeout_s']} s")
    # The bodies have returned; wait for the last SUCCESS rows to commit.
    while pending_count():
        time.sleep(0.002)
    done = time.perf_counter()
    return {"recovery_s": done - started, "recovery_launch_s": launched - started}


def _kill_child_when_pending(url: str, p: Params) -> None:
    child = spawn_self("recovery-child", url, p, env={BLOCK_ENV: "1"})
    assert child.stdout is not None
    try:
        _await_line(child.stdout, READY_LINE, p["timeout_s"])
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()


def _await_line(stream: IO[str], wanted: str, timeout_s: float) -> None:
    """Read ``stream`` until ``wanted``; a watchdog bounds the wait, since readline blocks."""
    watchdog = threading.Timer(timeout_s, lambda: stream.close())
    watchdog.start()
    try:
        for line in stream:
            if line.strip() == wanted:
                return
        raise RuntimeError(f"helper process ended or timed out before printing {wanted}")
    finally:
        watchdog.cancel()


def recovery_child(url: str, p: Params) -> Result:
    """Start N workflows that block in a step, say so once all are PENDING, wait to be killed."""
    launch(url)
    for i in range(p["workflows"]):
        with SetWorkflowID(f"recover-{i}"):
            DBOS.start_workflow(pending_workflow, i)
    while pending_count() < p["workflows"]:
        time.sleep(0.05)
    print(READY_LINE, flush=True)
    threading.Event().wait()
    return {}


def communication(url: str, p: Params) -> Result:
    """send/recv round trips and event wake-ups, with the peer here and in another process."""
    launch(url, poll=p["poll"])
    return {
        "rt1_ms": statistics.median(_round_trips(url, p, in_child=False, rounds=p["rounds_local"])),
        "rt2_ms": statistics.median(_round_trips(url, p, in_child=True, rounds=p["rounds_remote"])),
        "ev1_ms": statistics.median(_event_wakeups(url, p, in_child=False, rounds=p["rounds_local"])),
        "ev2_ms": statistics.median(_event_wakeups(url, p, in_child=True, rounds=p["rounds_remote"])),
    }


def _round_trips(url: str, p: Params, in_child: bool, rounds: int) -> List[float]:
    peer = f"echo-{uuid.uuid4().hex[:8]}"
    child = _start_peer(url, p, "echo", peer, in_child, rounds)
    times: List[float] = pinger(peer, rounds)
    _finish_peer(child)
    return times


def _event_wakeups(url: str, p: Params, in_child: bool, rounds: int) -> List[float]:
    source = f"events-{uuid.uuid4().hex[:8]}"
    child = _start_peer(url, p, "announcer", source, in_child, rounds)
    latencies = []
    for i in range(rounds):
        DBOS.send(source, "go", "go")
        stamp = DBOS.get_event(source, f"e{i}", timeout_seconds=60)
        latencies.append((time.time() - stamp) * 1000)
    _finish_peer(child)
    return latencies


def _start_peer(url: str, p: Params, role: str, workflow_id: str, in_child: bool,
                rounds: int) -> "Optional[subprocess.Popen[str]]":
    """Run the peer workflow in this process, or in a second one sharing the database."""
    if not in_child:
        with SetWorkflowID(workflow_id):
            DBOS.start_workflow(PEER_ROLES[role], rounds)
        return None
    child = spawn_self("comm-peer", url, {**p, "role": role, "workflow_id": workflow_id,
                                          "rounds": rounds})
    # Messages sent before the peer's row exists would still be delivered,
    # but waiting keeps the peer's start-up out of the first timing.
    while DBOS.get_workflow_status(workflow_id) is None:
        time.sleep(0.01)
    return child


def _finish_peer(child: "Optional[subprocess.Popen[str]]") -> None:
    if child is not None and child.wait(timeout=120) != 0:
        raise RuntimeError(f"peer process exited with {child.returncode}")


def comm_peer(url: str, p: Params) -> Result:
    launch(url, poll=p["poll"])
    with SetWorkflowID(p["workflow_id"]):
        PEER_ROLES[p["role"]](p["rounds"])
    # DBOS Transact sends an event's NOTIFY from a background thread a few
    # milliseconds after the commit; exiting at once would drop the last
    # one and leave the other process waiting out get_event's timeout.
    time.sleep(p.get("linger_s", 0.5))
    return {}


def migrate(url: str, p: Params) -> Result:
    """First launch: creates and migrates the database (the setup for ``launch``)."""
    return {"first_launch_ms": launch(url)}


def launch_time(url: str, p: Params) -> Result:
    """DBOS() + launch() in a fresh process on an already-migrated database."""
    return {"launch_ms": launch(url)}


WORKLOADS: Dict[str, Callable[[str, Params], Result]] = {
    "floor": floor,
    "sequential": sequential,
    "threads": threads,
    "cpu": cpu,
    "queue": queue,
    "recovery": recovery,
    "recovery-child": recovery_child,
    "communication": communication,
    "comm-peer": comm_peer,
    "migrate": migrate,
    "launch": launch_time,
}


def library_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dbos")
    except PackageNotFoundError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("--url", required=True)
    parser.add_argument("--params", default="{}", help="JSON object of workload parameters")
    args = parser.parse_args()
    try:
        result = WORKLOADS[args.workload](args.url, json.loads(args.params))
        result["_library"] = {"version": library_version(), "file": sys.modules["dbos"].__file__}
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        code = 0
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        code = 1
    # Exit without DBOS.destroy() or joining threads: the measurement is
    # over, and a library's lingering worker threads must not hang the run.
    os._exit(code)


if __name__ == "__main__":
    main()
