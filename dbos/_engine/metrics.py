"""What this process's engine counts for the metrics endpoint: workflow
executions by name and how they ended, step durations by name, recoveries.

The hot path must not pay for it: each thread counts in its own tally,
found through a thread-local, with no lock (a lock is taken once per
thread, to register its tally); a scrape sums the tallies. A dict copy is
one step under the interpreter lock, so a scrape never sees a tally half
changed. Tallies of threads that have ended are folded into one, so a
process that makes a thread per request keeps a bounded list.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

# Upper bounds (seconds) of the step-duration histogram's buckets; a last,
# unbounded bucket follows.
STEP_BUCKETS: Tuple[float, ...] = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                                   60.0, 300.0)
# How an ended execution's recorded status is counted.
ENDINGS = {"SUCCESS": "completed", "ERROR": "failed", "CANCELLED": "cancelled"}
EVENTS = ("started", "completed", "failed", "cancelled")
# Beyond this many registered tallies, those of ended threads are folded.
_FOLD_AT = 64


@dataclass
class Tally:
    """Counts of one thread (or, in a snapshot, of all)."""

    workflows: Dict[Tuple[str, str], int] = field(default_factory=dict)  # (name, event) -> count
    # name -> count per bucket (the unbounded one last), then the sum of seconds
    steps: Dict[str, List[float]] = field(default_factory=dict)
    recovered: int = 0

    def add(self, other: "Tally") -> None:
        for key, count in other.workflows.copy().items():
            self.workflows[key] = self.workflows.get(key, 0) + count
        for name, row in other.steps.copy().items():
            mine = self.steps.setdefault(name, [0.0] * (len(STEP_BUCKETS) + 2))
            for i, value in enumerate(list(row)):
                mine[i] += value
        self.recovered += other.recovered


_local = threading.local()
_lock = threading.Lock()
_tallies: List[Tuple[threading.Thread, Tally]] = []
_retired = Tally()


def _mine() -> Tally:
    tally: Optional[Tally] = getattr(_local, "tally", None)
    if tally is None:
        tally = _local.tally = Tally()
        with _lock:
            if len(_tallies) >= _FOLD_AT:
                _fold_ended()
            _tallies.append((threading.current_thread(), tally))
    return tally


def _fold_ended() -> None:
    """Under ``_lock``: an ended thread writes no more, so its tally can be merged."""
    ended = [(t, tally) for t, tally in _tallies if not t.is_alive()]
    for pair in ended:
        _retired.add(pair[1])
        _tallies.remove(pair)


def workflow_event(name: str, event: str) -> None:
    """One execution of workflow ``name`` here started, or ended as ``event``."""
    counts = _mine().workflows
    key = (name, event)
    counts[key] = counts.get(key, 0) + 1


def workflow_ended(name: str, status: str) -> None:
    """An execution here ended with ``status``; one left PENDING (shutdown) is not counted."""
    event = ENDINGS.get(status)
    if event is not None:
        workflow_event(name, event)


def step_took(name: str, seconds: float) -> None:
    """A step ran (all its attempts) for ``seconds``."""
    steps = _mine().steps
    row = steps.get(name)
    if row is None:
        row = steps[name] = [0.0] * (len(STEP_BUCKETS) + 2)
    row[bisect.bisect_left(STEP_BUCKETS, seconds)] += 1
    row[-1] += seconds


def recovered(count: int) -> None:
    """``count`` PENDING workflows were claimed for recovery here."""
    _mine().recovered += count


def snapshot() -> Tally:
    """Everything counted in this process so far."""
    total = Tally()
    with _lock:
        total.add(_retired)
        for _, tally in _tallies:
            total.add(tally)
    return total
