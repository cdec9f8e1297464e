"""A worker killed with SIGKILL and never restarted: the survivors take over its work.

Three real processes run ``takeover_app.py`` on one system database, each with
its own executor ID, the same application version and an executor timeout of
``TIMEOUT_S``. The victim starts first and holds everything it can: direct
workflows and both slots of a queue of concurrency 2, each hung in its second
step. Once the survivors are up (they can claim nothing: the queue is full),
the victim is killed. Within the timeout plus 10 s every workflow must have
finished on a survivor, with no checkpointed step run again, no workflow run
on two survivors, and never more than 2 queued jobs running at once.

On SQLite the three processes share one file.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Set, Tuple

import pytest

from tests.acceptance.child import Child, children_of
from tests.acceptance.takeover_app import CONCURRENCY
from tests.probe import qualified, query

pytestmark = pytest.mark.acceptance

APP = str(Path(__file__).with_name("takeover_app.py"))
TIMEOUT_S = 2
JOBS = 8
DIRECT = 2
GRACE_S = 10.0  # the bound: finished within the timeout plus this
ALL = {f"job-{i}" for i in range(JOBS)} | {f"direct-{i}" for i in range(DIRECT)}


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    with children_of(APP, tmp_path) as start:
        yield start


def send(child: Child, line: str) -> None:
    assert child.proc.stdin is not None
    child.proc.stdin.write(line + "\n")
    child.proc.stdin.flush()


def hung_after(child: Child, command: str, hanging: int) -> Set[str]:
    """Send ``command``; once it is done and ``hanging`` workflows hang, their IDs."""
    send(child, command)
    hung: Set[str] = set()
    done = False
    while not done or len(hung) < hanging:
        line = child.expect("")
        done = done or line.startswith("DONE")
        if line.startswith("HANGING"):
            hung.add(line.split()[1])
    return hung


def statuses(sys_url: str) -> Dict[str, Tuple[str, str]]:
    """workflow ID -> (status, executor_id) of the app's workflows."""
    table = qualified(sys_url, "workflow_status")
    rows = query(sys_url, f"SELECT workflow_uuid, status, executor_id FROM {table} WHERE name = %s",
                 ("takeover_work",))
    return {str(r[0]): (str(r[1]), str(r[2])) for r in rows}


def events(ledger: Path) -> List[Tuple[str, str, str]]:
    """(what, workflow ID, executor) of every line the workers logged."""
    lines = (ledger / "events.log").read_text().splitlines()
    return [tuple(line.split()) for line in lines if line]  # type: ignore[misc]


def wait_all_done(sys_url: str, survivors: List[Child], deadline: float) -> None:
    while {s for s, _ in statuses(sys_url).values()} != {"SUCCESS"} or set(statuses(sys_url)) != ALL:
        for child in survivors:
            assert child.alive(), f"{child.name} died:\n{child.log_tail()}"
        assert time.monotonic() < deadline, (
            f"not all finished within {TIMEOUT_S} + {GRACE_S:g} s of the kill: {statuses(sys_url)}\n"
            + "\n".join(c.log_tail() for c in survivors))
        time.sleep(0.1)


def victim_holding_everything(children: Callable[..., Child], sys_url: str, ledger: Path) -> Tuple[Child, Set[str]]:
    """The victim, hung in its direct workflows and in both queue slots."""
    victim = children("victim", sys_url, str(ledger), "exec-victim", "1", str(TIMEOUT_S))
    victim.expect("READY")
    hung = hung_after(victim, f"direct {DIRECT}", DIRECT)
    hung |= hung_after(victim, f"enqueue {JOBS}", CONCURRENCY)
    assert {w for w in hung if w.startswith("direct-")} == {f"direct-{i}" for i in range(DIRECT)}
    return victim, hung


def test_a_killed_worker_never_restarted_has_its_work_finished_once_by_the_survivors(
    sys_db_url: str, tmp_path: Path, children: Callable[..., Child],
) -> None:
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    victim, hung = victim_holding_everything(children, sys_db_url, ledger)
    survivors = [children(f"survivor-{n}", sys_db_url, str(ledger), f"exec-{n}", "0", str(TIMEOUT_S))
                 for n in range(2)]
    for survivor in survivors:
        survivor.expect("READY")
    assert not [e for e in events(ledger) if e[2] != "exec-victim"]  # the queue is full: nothing ran there

    victim.kill()
    wait_all_done(sys_db_url, survivors, time.monotonic() + TIMEOUT_S + GRACE_S)
    for survivor in survivors:
        survivor.stop()

    ran = events(ledger)
    on_survivors = [e for e in ran if e[2] != "exec-victim"]
    # The victim's checkpointed first steps never ran again; its hung steps ran
    # once more; every workflow's body ran on exactly one survivor, and finished once.
    assert Counter(w for what, w, _ in ran if what == "enter") == Counter({w: 1 for w in ALL})
    assert Counter(w for what, w, _ in ran if what == "hold") == Counter({w: 1 + (w in hung) for w in ALL})
    assert Counter(w for what, w, _ in ran if what == "finish") == Counter({w: 1 for w in ALL})
    assert Counter(w for what, w, _ in on_survivors if what == "body") == Counter({w: 1 for w in ALL})
    assert {w for what, w, executor in ran if what == "body" and executor == "exec-victim"} == hung
    final = statuses(sys_db_url)
    assert {executor for _, executor in final.values()} <= {"exec-0", "exec-1"}
    # One survivor won the takeover and recovered the direct workflows.
    assert len({final[f"direct-{i}"][1] for i in range(DIRECT)}) == 1
    state = json.loads((ledger / "running.json").read_text())
    assert state["peak"] == CONCURRENCY and state["running"] == []
    table = qualified(sys_db_url, "executors")
    assert query(sys_db_url, f"SELECT executor_id FROM {table} WHERE executor_id = %s", ("exec-victim",)) == []
