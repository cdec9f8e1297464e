"""Rolling deploys with real processes: DBOS Transact's recovery races, as named tests.

The processes run ``takeover_app.py`` (see there for what each workflow
logs); each test is named after the DBOS Transact (Python) issue whose
scenario it replays, on both backends (SQLite: the processes share one file).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator, List, Set

import pytest

from tests.acceptance.child import Child, children_of
from tests.acceptance.test_takeover_processes import events, hung_after, statuses
from tests.probe import qualified, query

pytestmark = pytest.mark.acceptance

APP = str(Path(__file__).with_name("takeover_app.py"))
TIMEOUT_S = 2
# The #804 test needs the first process's heartbeat to stay fresh while the
# twin launches; on a loaded CI machine 2 s (a beat each 0.5 s) is too tight.
TWIN_TIMEOUT_S = 6
WAIT_S = 30.0  # an upper bound reached only when a test is already failing


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    with children_of(APP, tmp_path) as start:
        yield start


def wait_all_success(sys_url: str, expected: Set[str], workers: List[Child]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not (set(statuses(sys_url)) == expected and {s for s, _ in statuses(sys_url).values()} == {"SUCCESS"}):
        for child in workers:
            assert child.alive(), f"{child.name} died:\n{child.log_tail()}"
        assert time.monotonic() < deadline, f"stuck: {statuses(sys_url)}"
        time.sleep(0.1)


@pytest.mark.parametrize("successor", ["same-executor-id", "other-executor-id"])
def test_dbos_805_a_recovered_workflow_does_not_block_a_queue_of_concurrency_1(
    sys_db_url: str, tmp_path: Path, children: Callable[..., Child], successor: str,
) -> None:
    """DBOS Transact #805: a queued workflow on a queue of concurrency 1,
    interrupted between two checkpointed steps and the next one, stayed
    PENDING for good: every restart said it was recovering it, yet it never
    ran its next step, and the jobs behind it stayed ENQUEUED. Here its worker
    is killed in that spot; its successor (the same executor ID relaunched, or
    another executor taking over) resumes it at its next step, and the queue
    drains behind it, one job at a time."""
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    victim = children("victim", sys_db_url, str(ledger), "exec-a", "1", str(TIMEOUT_S), "1")
    victim.expect("READY")
    (stuck,) = hung_after(victim, "enqueue 4", 1)  # the one job the queue lets run, killed between its steps
    victim.kill()
    executor = "exec-a" if successor == "same-executor-id" else "exec-b"
    after = children("successor", sys_db_url, str(ledger), executor, "0", str(TIMEOUT_S), "1")
    after.expect("READY")
    jobs = {f"job-{i}" for i in range(4)}
    wait_all_success(sys_db_url, jobs, [after])
    after.stop()

    ran = events(ledger)
    assert Counter(w for what, w, _ in ran if what == "enter") == Counter({w: 1 for w in jobs})
    assert Counter(w for what, w, _ in ran if what == "hold") == Counter({w: 1 + (w == stuck) for w in jobs})
    assert Counter(w for what, w, _ in ran if what == "finish") == Counter({w: 1 for w in jobs})
    assert {w for what, w, who in ran if what == "finish" and who != executor} == set()
    state = json.loads((ledger / "running.json").read_text())
    assert state["peak"] == 1 and state["running"] == []


def executor_rows(sys_url: str) -> dict[str, tuple[int, int]]:
    """executor ID -> (pid, heartbeat_at) of every live-registered executor."""
    rows = query(sys_url, f"SELECT executor_id, pid, heartbeat_at FROM {qualified(sys_url, 'executors')}")
    return {str(r[0]): (int(r[1]), int(r[2])) for r in rows}


def test_dbos_804_a_second_process_with_the_same_executor_id_leaves_the_first_ones_work_alone(
    sys_db_url: str, tmp_path: Path, children: Callable[..., Child],
) -> None:
    """DBOS Transact #804: two processes launched with the same executor ID
    and version (the default ID is the same for every process) each recover
    the other's PENDING workflows at launch, so work in flight in the first
    runs a second time in the second; and, sharing one heartbeat row, the
    survivor never takes over the other's work when it dies. Here the twin
    launches while the first process is hung in two workflows: it runs under
    an ID derived from the shared one (with a warning), leaves both
    workflows alone while their process lives, and once that process is
    killed, takes them over and finishes each, with no step run twice."""
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    first = children("first", sys_db_url, str(ledger), "exec-a", "1", str(TWIN_TIMEOUT_S))
    first.expect("READY")
    hung = hung_after(first, "direct 2", 2)
    twin = children("twin", sys_db_url, str(ledger), "exec-a", "0", str(TWIN_TIMEOUT_S))
    twin.expect("READY")

    # Half a second of heartbeats after the twin's launch: its launch recovery,
    # had it taken the first's work, has run it by now (nothing hangs in the twin).
    beat = max(at for _, at in executor_rows(sys_db_url).values())
    deadline = time.monotonic() + WAIT_S
    while max(at for _, at in executor_rows(sys_db_url).values()) < beat + 500:
        assert time.monotonic() < deadline and twin.alive(), twin.log_tail()
        time.sleep(0.05)
    assert {w: statuses(sys_db_url)[w] for w in hung} == {w: ("PENDING", "exec-a") for w in hung}
    before = events(ledger)
    assert Counter((step, w) for step, w, _ in before) == Counter(
        {(step, w): 1 for w in hung for step in ("body", "enter", "hold")})

    assert "is in use by a live process" in twin.log.read_text(), twin.log_tail()
    (derived,) = set(executor_rows(sys_db_url)) - {"exec-a"}
    assert derived.startswith("exec-a-") and executor_rows(sys_db_url)["exec-a"][0] == first.proc.pid
    first.kill()
    wait_all_success(sys_db_url, hung, [twin])
    twin.stop()
    ran = events(ledger)
    for what, times in (("body", 2), ("enter", 1), ("hold", 2), ("finish", 1)):
        assert Counter(w for step, w, _ in ran if step == what) == Counter({w: times for w in hung}), what
    assert {statuses(sys_db_url)[w][1] for w in hung} == {derived}
