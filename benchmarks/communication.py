"""Send/recv round trip and event wake-up latency, in one process and across two.

    python benchmarks/communication.py --backend sqlite
    python benchmarks/communication.py --backend postgres [--url postgresql://...]

Prints medians (milliseconds) as a table and, with --json, as JSON. Uses only
the public API. Across processes on SQLite, waiters poll at
notification_listener_polling_interval_sec (set with --poll).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Dict, List, Optional

from dbos import DBOS, DBOSConfig, SetWorkflowID

ROUNDS = 200


def config(url: str, poll: float) -> DBOSConfig:
    return DBOSConfig(name="bench-comm", system_database_url=url,
                      notification_listener_polling_interval_sec=poll,
                      application_version="bench")


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
    for i in range(rounds):
        DBOS.recv("go", timeout_seconds=60)
        DBOS.set_event(f"e{i}", time.time())


def round_trips(peer_in_child: bool, url: str, poll: float, rounds: int) -> List[float]:
    peer = f"echo-{uuid.uuid4().hex[:8]}"
    child = _start_peer("echo", peer, peer_in_child, url, poll, rounds)
    times: List[float] = pinger(peer, rounds)
    if child is not None:
        child.wait(timeout=120)
    return times


def event_wakeups(in_child: bool, url: str, poll: float, rounds: int) -> List[float]:
    source = f"events-{uuid.uuid4().hex[:8]}"
    child = _start_peer("announcer", source, in_child, url, poll, rounds)
    latencies = []
    for i in range(rounds):
        DBOS.send(source, "go", "go")
        stamp = DBOS.get_event(source, f"e{i}", timeout_seconds=60)
        latencies.append((time.time() - stamp) * 1000)
    if child is not None:
        child.wait(timeout=120)
    return latencies


def _start_peer(role: str, workflow_id: str, in_child: bool, url: str, poll: float,
                rounds: int) -> "Optional[subprocess.Popen[bytes]]":
    """Run the peer workflow here, or in a second process that shares the database."""
    if not in_child:
        with SetWorkflowID(workflow_id):
            DBOS.start_workflow(echo if role == "echo" else announcer, rounds)
        return None
    child = _spawn(url, poll, role, workflow_id, rounds)
    _wait_for_row(workflow_id)
    return child


def _wait_for_row(workflow_id: str) -> None:
    while DBOS.get_workflow_status(workflow_id) is None:
        time.sleep(0.01)


def _spawn(url: str, poll: float, role: str, workflow_id: str, rounds: int) -> "subprocess.Popen[bytes]":
    return subprocess.Popen([sys.executable, __file__, "--child", role, workflow_id,
                             str(rounds), "--url", url, "--poll", str(poll)])


def child_main(role: str, workflow_id: str, rounds: int, url: str, poll: float) -> None:
    DBOS(config=config(url, poll))
    DBOS.launch()
    with SetWorkflowID(workflow_id):
        (echo if role == "echo" else announcer)(rounds)
    DBOS.destroy()


def default_url(backend: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{os.path.join(tempfile.mkdtemp(), 'bench.sqlite')}"
    return f"postgresql://postgres@localhost:5432/dbos_bench_{uuid.uuid4().hex[:8]}"


def run(url: str, poll: float, rounds: int) -> Dict[str, float]:
    DBOS(config=config(url, poll))
    DBOS.reset_system_database()
    DBOS.launch()
    try:
        return {
            "send/recv round trip, one process (ms)": statistics.median(round_trips(False, url, poll, rounds)),
            "send/recv round trip, two processes (ms)": statistics.median(round_trips(True, url, poll, rounds // 4)),
            "event wake-up, one process (ms)": statistics.median(event_wakeups(False, url, poll, rounds)),
            "event wake-up, two processes (ms)": statistics.median(event_wakeups(True, url, poll, rounds // 4)),
        }
    finally:
        DBOS.destroy()
        DBOS.reset_system_database(system_database_url=url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--url", help="system database URL (default: a fresh one)")
    parser.add_argument("--poll", type=float, default=0.05, help="polling interval (s) where there is no LISTEN")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("ROLE", "WORKFLOW_ID", "ROUNDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child[0], args.child[1], int(args.child[2]), args.url, args.poll)
        return
    figures = run(args.url or default_url(args.backend), args.poll, args.rounds)
    if args.json:
        print(json.dumps({"backend": args.backend, "medians_ms": figures}, indent=2))
        return
    print(f"{'figure (' + args.backend + ')':<45} {'median':>10}")
    for name, value in figures.items():
        print(f"{name:<45} {value:>10.3f}")


if __name__ == "__main__":
    main()
