"""Database-backed schedules in real processes (``schedule_app.py``), on the
backend chosen with ``--backend``.

* Two processes share one system database and one 1-second schedule for 10
  seconds: every tick runs exactly once, with no gap.
* The app's own controls (pause, resume, trigger, apply) as its users would
  drive them.
* A process stopped with SIGSTOP for 4 seconds does not replay the ticks it
  missed when it continues (DBOS Transact's issue #803).
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator, List, Tuple

import pytest

from tests.acceptance.child import Child, children_of
from tests.acceptance.schedule_app import SCHEDULE
from tests.probe import qualified, query

pytestmark = pytest.mark.acceptance

APP = str(Path(__file__).with_name("schedule_app.py"))
WAIT_S = 30.0  # an upper bound reached only when a test is already failing
Run = Tuple[datetime, str, str, str]


@pytest.fixture
def apps(tmp_path: Path, sys_db_url: str) -> Iterator[Callable[[str], Child]]:
    """``apps(name)``: a ``schedule_app.py`` process as executor ``name``, writing to one runs file."""
    with children_of(APP, tmp_path) as start:
        yield lambda name: start(name, sys_db_url, str(tmp_path / "runs.txt"), name)


def read_runs(path: Path) -> List[Run]:
    if not path.exists():
        return []
    runs = []
    for line in path.read_text().splitlines():
        tick, executor, workflow_id, greeting = line.split()
        runs.append((datetime.fromisoformat(tick), executor, workflow_id, greeting))
    return runs


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def scheduled_ids(sys_db_url: str) -> List[str]:
    table = qualified(sys_db_url, "workflow_status")
    rows = query(sys_db_url, f"SELECT workflow_uuid FROM {table} WHERE schedule_name = '{SCHEDULE}'")
    return [str(r[0]) for r in rows]


def test_two_processes_fire_each_tick_exactly_once(apps: Callable[[str], Child], tmp_path: Path,
                                                    sys_db_url: str) -> None:
    procs = [apps(f"sched-{n}") for n in range(2)]
    for proc in procs:
        proc.expect("READY")
    both_up = datetime.now(timezone.utc)
    runs_file = tmp_path / "runs.txt"
    wait_until(lambda: sum(t > both_up + timedelta(seconds=10) for t, *_ in read_runs(runs_file)) > 0,
               "ten seconds of ticks ran with both processes up")
    for proc in procs:
        proc.stop()

    runs = read_runs(runs_file)
    fired = Counter(tick for tick, *_ in runs)
    assert max(fired.values()) == 1, [t for t, n in fired.items() if n > 1]  # no tick ran twice
    window = sorted(t for t in fired if both_up + timedelta(seconds=1) < t <= both_up + timedelta(seconds=10))
    assert len(window) >= 8
    assert [b - a for a, b in zip(window, window[1:])] == [timedelta(seconds=1)] * (len(window) - 1)  # no gap
    for tick, executor, workflow_id, greeting in runs:
        assert workflow_id == f"sched-{SCHEDULE}-{tick.isoformat()}"
        assert executor in {"sched-0", "sched-1"} and greeting == "hello"
    ids = scheduled_ids(sys_db_url)
    assert len(ids) == len(set(ids)) and {w for _, _, w, _ in runs} <= set(ids)


def test_the_apps_controls_pause_resume_trigger_and_apply(apps: Callable[[str], Child], tmp_path: Path) -> None:
    app = apps("demo")
    app.expect("READY")
    runs_file = tmp_path / "runs.txt"
    wait_until(lambda: len(read_runs(runs_file)) >= 2, "two ticks ran")
    assert app.ask("status", "STATUS").split()[1:3] == ["ACTIVE", "*_*_*_*_*_*"]
    app.ask("pause", "PAUSED")
    paused_at = datetime.now(timezone.utc)
    assert app.ask("status", "STATUS").split()[1] == "PAUSED"
    triggered = app.ask("trigger", "TRIGGERED").split()[1]
    wait_until(lambda: triggered in {w for _, _, w, _ in read_runs(runs_file)}, "the triggered run ran")
    time.sleep(2.5)  # two ticks' time: a paused schedule lets them pass
    ticks_while_paused = [t for t, _, w, _ in read_runs(runs_file) if t > paused_at + timedelta(seconds=1)
                          and "trigger" not in w]
    assert ticks_while_paused == []
    app.ask("resume", "RESUMED")
    resumed_at = datetime.now(timezone.utc)
    wait_until(lambda: any(t > resumed_at for t, *_ in read_runs(runs_file)), "a tick ran after the resume")
    app.ask("apply 0 0 1 1 *", "APPLIED")  # once a year from now on
    assert app.ask("status", "STATUS").split()[1:3] == ["ACTIVE", "0_0_1_1_*"]
    app.stop()
    restarted = apps("demo-again")  # a restart applies its schedules again: back to every second
    restarted.expect("READY")
    restarted_at = datetime.now(timezone.utc)
    wait_until(lambda: any(t > restarted_at for t, *_ in read_runs(runs_file)), "a tick ran after the restart")
    restarted.stop()


def test_a_stopped_process_does_not_replay_missed_ticks(apps: Callable[[str], Child], tmp_path: Path,
                                                        sys_db_url: str) -> None:
    app = apps("sleeper")
    app.expect("READY")
    runs_file = tmp_path / "runs.txt"
    wait_until(lambda: len(read_runs(runs_file)) >= 2, "two ticks ran")
    app.proc.send_signal(signal.SIGSTOP)
    stopped_at = datetime.now(timezone.utc)
    time.sleep(4)  # four ticks fall due while the process cannot run
    continued_at = datetime.now(timezone.utc)
    app.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: any(t > continued_at + timedelta(seconds=1) for t, *_ in read_runs(runs_file)),
               "ticks run again after SIGCONT")
    app.stop()
    ticks = sorted(datetime.fromisoformat(w[len(f"sched-{SCHEDULE}-"):]) for w in scheduled_ids(sys_db_url))
    missed = [t for t in ticks if stopped_at + timedelta(seconds=1) < t < continued_at - timedelta(seconds=1)]
    assert missed == [], missed
    assert len({t for t, *_ in read_runs(runs_file)}) == len(ticks)  # every tick started ran, once
