"""The soak: four worker processes share a queue on PostgreSQL through the
fault proxy, while a feeder enqueues a steady stream of jobs, one worker is
SIGKILLed every 5 to 20 s (and relaunched with its executor ID), and every
minute the proxy cuts all connections and refuses new ones for a few
seconds. At the end: no workflow lost, no checkpointed step run again, every
job body completed exactly once, the queue's concurrency never exceeded.

Slow by design, so never in CI: ``DBOS_SOAK_MINUTES=10 pytest --backend
postgres -s tests/chaos/test_soak.py`` runs it and prints its figures.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import psycopg2
import pytest

from dbos import DBOSClient, EnqueueOptions
from tests.acceptance.child import Child
from tests.chaos import soak_app
from tests.chaos.proxy import FaultProxy
from tests.chaos.support import proxy, require_postgres, through  # noqa: F401  (proxy is a fixture)
from tests.conftest import postgres_url
from tests.probe import drop_database

SOAK_MINUTES = float(os.environ.get("DBOS_SOAK_MINUTES", "0") or 0)
pytestmark = [pytest.mark.chaos, pytest.mark.timeout(0),  # runs for as long as it is asked to
              pytest.mark.skipif(not SOAK_MINUTES, reason="the soak runs only with DBOS_SOAK_MINUTES set")]

APP = str(Path(soak_app.__file__))
WORKERS = 4
ENQUEUE_EVERY_S = 1.0
ENQUEUE_BURST = 8  # more than the queue's concurrency: the limit is reached every second
KILL_EVERY_S = (5.0, 20.0)
CUT_EVERY_S = 60.0
REFUSE_FOR_S = 3.0
DRAIN_LIMIT_S = 600.0  # after the faults stop; reached only when the soak has already failed


@dataclass
class Figures:
    enqueued: List[str] = field(default_factory=list)
    kills: int = 0
    cuts: int = 0
    started: float = field(default_factory=time.monotonic)


@pytest.fixture
def ledger_url() -> Iterator[str]:
    url = postgres_url(f"dbos_soak_ledger_{uuid.uuid4().hex[:8]}")
    admin = psycopg2.connect(postgres_url("postgres"))
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {url.rsplit('/', 1)[1]}")
    admin.close()
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute(soak_app.LEDGER_SCHEMA)
    conn.close()
    yield url
    drop_database(url)


class Soak:
    """The workers, the feeder and the faults of one run."""

    def __init__(self, sys_url: str, ledger: str, fault: FaultProxy, log_dir: Path) -> None:
        self.proxied_url = through(sys_url, fault)
        self.ledger = ledger
        self.fault = fault
        self.log_dir = log_dir
        self.sys_url = sys_url
        self.failures: List[BaseException] = []
        self.figures = Figures()
        self.workers: List[Child] = []
        self.client: Optional[DBOSClient] = None
        self.retired: List[Child] = []
        self.stop = threading.Event()  # the feeder stops
        self.idle = threading.Event()  # never set: waits for pacing

    def start_worker(self, index: int) -> Child:
        name = f"w{index}-{len(self.retired) + len(self.workers)}"
        child = Child(APP, self.log_dir, name, self.proxied_url, self.ledger, f"soak-w{index}")
        child.expect("READY")
        return child

    def begin(self) -> None:
        """Workers first (the first launch migrates), then the client, then the feeder."""
        self.workers = [self.start_worker(i) for i in range(WORKERS)]
        self.client = DBOSClient(system_database_url=self.sys_url)  # direct: enqueues go on during cuts
        threading.Thread(target=self.feed, name="soak-feeder", daemon=True).start()

    def feed(self) -> None:
        try:
            while not self.stop.wait(ENQUEUE_EVERY_S):
                for _ in range(ENQUEUE_BURST):
                    self.enqueue_one()
        except BaseException as exc:  # reported by the test
            self.failures.append(exc)

    def enqueue_one(self) -> None:
        assert self.client is not None
        workflow_id = f"soak-{len(self.figures.enqueued):06d}"
        self.client.enqueue(EnqueueOptions(workflow_name="soak_job", queue_name=soak_app.QUEUE,
                                           workflow_id=workflow_id))
        self.figures.enqueued.append(workflow_id)

    def kill_one(self) -> None:
        index = random.randrange(WORKERS)
        victim = self.workers[index]
        victim.kill()
        conn = psycopg2.connect(self.ledger)
        with conn, conn.cursor() as cur:  # after the death: holds of that process end here at the latest
            cur.execute("INSERT INTO kills (pid) VALUES (%s)", (victim.proc.pid,))
        conn.close()
        self.retired.append(victim)
        self.workers[index] = self.start_worker(index)
        self.figures.kills += 1

    def cut(self) -> None:
        self.fault.cut()
        self.fault.refuse()
        self.idle.wait(REFUSE_FOR_S)
        self.fault.accept()
        self.figures.cuts += 1

    def run_faults(self, seconds: float) -> None:
        now = time.monotonic()
        end, next_kill = now + seconds, now + random.uniform(*KILL_EVERY_S)
        next_cut = now + min(CUT_EVERY_S, seconds / 2)  # a short trial run sees a cut too
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_cut:
                self.cut()
                next_cut = now + CUT_EVERY_S
            elif now >= next_kill:
                self.kill_one()
                next_kill = now + random.uniform(*KILL_EVERY_S)
            self.idle.wait(max(0.0, min(next_kill, next_cut, end) - time.monotonic()))

    def drain(self) -> None:
        assert self.client is not None
        deadline = time.monotonic() + DRAIN_LIMIT_S
        while time.monotonic() < deadline:
            left = self.client.list_workflows(status=["ENQUEUED", "PENDING"], workflow_id_prefix="soak-",
                                              load_input=False, load_output=False)
            if not left:
                return
            self.idle.wait(1.0)
        raise AssertionError(f"{len(left)} workflows unfinished {DRAIN_LIMIT_S:g} s after the faults stopped")

    def close(self) -> None:
        for child in self.workers:
            if child.alive():
                child.stop()
        for child in self.workers + self.retired:
            child.reap()
        if self.client is not None:
            self.client.destroy()


def ledger_rows(url: str, sql: str) -> List[Tuple[Any, ...]]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def steps_run_again(results: Dict[str, List[str]], ledger: str) -> Tuple[int, int]:
    """(checkpointed steps run again, steps cut short and rightly run again)."""
    runs: Dict[Tuple[str, int], List[str]] = defaultdict(list)
    for wf, step, token in ledger_rows(ledger, "SELECT wf, step, token FROM executions ORDER BY id"):
        runs[(wf, step)].append(token)
    wrong = rerun = 0
    for wf, tokens in results.items():
        for step, token in enumerate(tokens, start=1):
            seen = runs[(wf, step)]
            assert token in seen, f"{wf} step {step}: the checkpointed run is not in the ledger"
            wrong += len(seen) - 1 - seen.index(token)  # runs recorded after the checkpointed one
            rerun += seen.index(token)
    return wrong, rerun


def max_concurrency(ledger: str) -> int:
    """The most holds at once, a killed process's open holds ending at its kill."""
    kills = dict(ledger_rows(ledger, "SELECT pid, at FROM kills"))
    events: List[Tuple[datetime, int]] = []
    for pid, entered, left_at in ledger_rows(ledger, "SELECT pid, entered, left_at FROM holds"):
        end: Optional[datetime] = left_at or kills.get(pid)
        assert end is not None, f"a hold of process {pid}, never killed, never ended"
        events += [(entered, 1), (end, -1)]
    peak = now = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
        now += delta
        peak = max(peak, now)
    return peak


def test_soak(backend: str, fresh_postgres_url: str, ledger_url: str, proxy: FaultProxy,  # noqa: F811
              tmp_path: Path) -> None:
    require_postgres(backend)
    soak = Soak(fresh_postgres_url, ledger_url, proxy, tmp_path)
    try:
        soak.begin()
        soak.run_faults(SOAK_MINUTES * 60)
        soak.stop.set()
        soak.drain()
        assert soak.failures == []
        check_and_report(soak, time.monotonic() - soak.figures.started)
    finally:
        soak.stop.set()
        soak.close()


def check_and_report(soak: Soak, duration: float) -> None:
    assert soak.client is not None
    listed = soak.client.list_workflows(workflow_id_prefix="soak-", load_input=False)
    statuses = {w.workflow_id: w.status for w in listed}
    lost = [wf for wf in soak.figures.enqueued if statuses.get(wf) != "SUCCESS"]
    results = {w.workflow_id: w.output for w in listed if w.status == "SUCCESS"}
    wrong, rerun = steps_run_again(results, soak.ledger)
    completions = ledger_rows(soak.ledger, "SELECT wf, COUNT(*) FROM completions GROUP BY wf")
    duplicates = sum(1 for _, n in completions if n != 1)
    peak = max_concurrency(soak.ledger)
    moved = ledger_rows(soak.ledger, "SELECT COUNT(*) FROM (SELECT wf FROM executions GROUP BY wf "
                                     "HAVING COUNT(DISTINCT pid) > 1) AS m")[0][0]
    print(f"\nSOAK {duration / 60:.1f} min: {len(results)} workflows completed of {len(soak.figures.enqueued)} "
          f"enqueued; {soak.figures.kills} SIGKILLs, {soak.figures.cuts} PostgreSQL cuts; {moved} jobs resumed "
          f"in a new process after a kill; {rerun} uncheckpointed step runs repeated; max observed "
          f"concurrency {peak} (limit {soak_app.CONCURRENCY}); lost {len(lost)}, checkpointed steps re-run "
          f"{wrong}, duplicate job bodies {duplicates}", flush=True)
    assert lost == []
    assert wrong == 0
    assert duplicates == 0 and len(completions) == len(results)
    assert peak <= soak_app.CONCURRENCY
