"""Benchmark harness: this library against the commit floor and, optionally, DBOS Transact.

    .venv/bin/python benchmarks/bench.py --backend sqlite
    .venv/bin/python benchmarks/bench.py --backend postgres [--url postgresql://...]
    .venv/bin/python benchmarks/bench.py --backend postgres --reference /work/refenv/bin/python \\
        --json-out benchmarks/results/DATE-postgres.json

Every repetition of every workload runs in a fresh process
(``PYTHON benchmarks/workloads.py WORKLOAD``) on a freshly dropped database;
with --reference the two libraries alternate repetition by repetition (and
swap who goes first), so slow drift on the machine hits both alike. Figures
are medians over repetitions. See benchmarks/README.md for what each means.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import dbadmin

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOADS_PY = os.path.join(HERE, "workloads.py")
RESULT_PREFIX = "BENCH_RESULT "
Params = Dict[str, Any]


# ---------------------------------------------------------------- the plan

@dataclass(frozen=True)
class Workload:
    name: str
    reps: int
    quick_reps: int
    params: Params
    quick_params: Params
    setup: Tuple[str, ...] = ()      # workloads run first in their own processes
    ours_only: bool = False          # no library involved: measured once, not per side
    timeout_s: float = 300.0


# Sizes: a full run per backend, both libraries, takes about 5-8 minutes on
# 2 cores; --quick about a minute. The reference is the slow side, so its
# per-run time decides the counts.
PLAN: Tuple[Workload, ...] = (
    Workload("floor", 5, 1, {"commits": 500}, {"commits": 200}, ours_only=True),
    Workload("launch", 5, 1, {}, {}, setup=("migrate",), timeout_s=120),
    Workload("sequential", 5, 1, {"warmup": 20, "batches": 4, "per_batch": 50},
             {"warmup": 10, "batches": 2, "per_batch": 25}),
    # CPU time, not wall time: what a workflow and a step cost the process
    # whatever the disk's fsync takes.
    Workload("cpu", 5, 1, {"warmup": 50, "steps": 10, "batches": 4, "per_batch": 100},
             {"warmup": 20, "steps": 10, "batches": 2, "per_batch": 50}),
    Workload("threads", 3, 1, {"warmup": 20, "threads": [1, 4, 16], "window_s": 2.0},
             {"warmup": 10, "threads": [1, 4, 16], "window_s": 0.5}),
    # Both libraries' queues poll once a second by default; 0.1 s for both
    # keeps the run short without favouring either.
    Workload("queue", 3, 1, {"jobs": 2000, "poll": 0.1, "result_poll": 0.05},
             {"jobs": 500, "poll": 0.1, "result_poll": 0.05}),
    Workload("recovery", 3, 1, {"workflows": 1000, "timeout_s": 120},
             {"workflows": 200, "timeout_s": 60}),
    # Without LISTEN/NOTIFY (SQLite) waiters in both libraries poll at
    # notification_listener_polling_interval_sec, default 1 s: 0.05 for both.
    Workload("communication", 3, 1, {"poll": 0.05, "rounds_local": 100, "rounds_remote": 40},
             {"poll": 0.05, "rounds_local": 30, "rounds_remote": 10}),
)


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    digits: int
    workload: str  # the workload that measures it, to name the reason when it is missing


FIGURES: Tuple[Figure, ...] = (
    Figure("floor_ms", "floor: INSERT + COMMIT", "ms", False, 3, "floor"),
    Figure("floor_rollback_ms", "floor, rollback journal (DBOS Transact's SQLite mode)", "ms", False, 3, "floor"),
    Figure("seq0_ms", "sequential 0-step workflow latency", "ms", False, 3, "sequential"),
    Figure("seq0_wps", "sequential 0-step workflows", "wf/s", True, 0, "sequential"),
    Figure("seq3_ms", "sequential 3-step workflow latency", "ms", False, 3, "sequential"),
    Figure("seq3_wps", "sequential 3-step workflows", "wf/s", True, 0, "sequential"),
    Figure("step_ms", "cost per step ((3-step - 0-step) / 3)", "ms", False, 3, "sequential"),
    Figure("step_over_floor", "cost per step / floor", "x", False, 2, "sequential"),
    Figure("cpu_wf_us", "CPU per empty workflow (sequential)", "us", False, 1, "cpu"),
    Figure("cpu_step_us", "CPU per step ((k-step - empty) / k)", "us", False, 1, "cpu"),
    Figure("thr1_wps", "3-step workflows, 1 thread", "wf/s", True, 0, "threads"),
    Figure("thr4_wps", "3-step workflows, 4 threads", "wf/s", True, 0, "threads"),
    Figure("thr16_wps", "3-step workflows, 16 threads", "wf/s", True, 0, "threads"),
    Figure("thr16_over_1", "16 threads over 1 thread", "x", True, 2, "threads"),
    Figure("queue_jps", "queue of {jobs} one-step jobs (enqueue + run)", "jobs/s", True, 0, "queue"),
    Figure("queue_enqueue_ms", "queue: enqueue per job", "ms", False, 3, "queue"),
    Figure("queue_threads", "queue: peak threads (OS)", "threads", False, 0, "queue"),
    Figure("queue_rss_mb", "queue: peak RSS (whole process)", "MB", False, 1, "queue"),
    Figure("recovery_s", "recovery of {workflows} pending workflows", "s", False, 3, "recovery"),
    Figure("recovery_launch_s", "recovery: launch() returns after", "s", False, 3, "recovery"),
    Figure("rt1_ms", "send/recv round trip, one process", "ms", False, 3, "communication"),
    Figure("rt2_ms", "send/recv round trip, two processes", "ms", False, 3, "communication"),
    Figure("ev1_ms", "event wake-up, one process", "ms", False, 3, "communication"),
    Figure("ev2_ms", "event wake-up, two processes", "ms", False, 3, "communication"),
    Figure("first_launch_ms", "first launch (creates + migrates)", "ms", False, 1, "launch"),
    Figure("launch_ms", "launch, migrated database (DBOS() + launch())", "ms", False, 1, "launch"),
)
FIGURE_BY_KEY = {f.key: f for f in FIGURES}


# ---------------------------------------------------------------- running workloads

class WorkloadFailed(Exception):
    """A workload process failed; the message is the reason shown as n/a."""


@dataclass
class Side:
    """One library under test: its interpreter, its database and what it measured."""
    label: str
    python: str
    url: str
    reps: Dict[str, List[float]] = field(default_factory=dict)
    errors: Dict[str, str] = field(default_factory=dict)   # workload -> last failure
    library: Dict[str, str] = field(default_factory=dict)


def run_process(python: str, workload: str, url: str, params: Params, timeout_s: float,
                cwd: str) -> Dict[str, Any]:
    """Run one workload process and return its result line, or raise WorkloadFailed."""
    cmd = [python, WORKLOADS_PY, workload, "--url", url, "--params", json.dumps(params)]
    # A session of its own so a timeout kills the helper processes too.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise WorkloadFailed(f"{workload}: timed out after {timeout_s:.0f} s")
    finally:
        _kill_leftovers(proc.pid)
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: Dict[str, Any] = json.loads(line[len(RESULT_PREFIX):])
            return result
    raise WorkloadFailed(f"{workload}: {_last_error_line(err) or f'exit code {proc.returncode}'}")


def _kill_leftovers(pgid: int) -> None:
    # Helpers (recovery child, message peer) must not outlive their run.
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _last_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def run_repetition(side: Side, workload: Workload, params: Params, scratch: str) -> Optional[str]:
    """One repetition on a fresh database: setup processes, then the measured one.

    Returns the failure, if any; it is also kept on the side, so the figure
    shows n/a with this reason when no repetition succeeded.
    """
    dbadmin.drop(side.url)
    try:
        for name in (*workload.setup, workload.name):
            result = run_process(side.python, name, side.url, params, workload.timeout_s, scratch)
            side.library = result.pop("_library", side.library)
            for key, value in result.items():
                side.reps.setdefault(key, []).append(float(value))
        return None
    except WorkloadFailed as failure:
        side.errors[workload.name] = str(failure)
        return str(failure)
    finally:
        dbadmin.drop(side.url)


def run_plan(sides: Sequence[Side], floor_side: Side, plan: Sequence[Workload], quick: bool,
             reps_override: Optional[int], scratch: str) -> None:
    for workload in plan:
        reps = reps_override or (workload.quick_reps if quick else workload.reps)
        params = workload.quick_params if quick else workload.params
        for rep in range(reps):
            # Alternate who goes first, so neither side always runs on a
            # machine warmed (or loaded) by the other.
            order = [floor_side] if workload.ours_only else (
                list(sides) if rep % 2 == 0 else list(reversed(sides)))
            for side in order:
                started = time.perf_counter()
                failure = run_repetition(side, workload, params, scratch)
                log(f"[{workload.name} {rep + 1}/{reps} {side.label}] "
                    f"{time.perf_counter() - started:.1f} s {failure or 'ok'}")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- figures

Values = Dict[str, Optional[float]]


def medians(side: Side) -> Values:
    values: Values = {key: statistics.median(v) for key, v in side.reps.items() if v}
    return values


def add_derived(values: Values, floor_ms: Optional[float]) -> None:
    """Figures computed from the medians, as the issue defines them."""
    seq0, seq3 = values.get("seq0_ms"), values.get("seq3_ms")
    if seq0 is not None and seq3 is not None:
        step_ms = values["step_ms"] = (seq3 - seq0) / 3
        if floor_ms:
            values["step_over_floor"] = step_ms / floor_ms
    thr1, thr16 = values.get("thr1_wps"), values.get("thr16_wps")
    if thr1 and thr16 is not None:
        values["thr16_over_1"] = thr16 / thr1


def ratio(ours: Optional[float], reference: Optional[float]) -> Optional[float]:
    if ours is None or reference is None or reference == 0:
        return None
    return ours / reference


def advantage(figure: Figure, ours: Optional[float], reference: Optional[float]) -> Optional[float]:
    """How many times better ours is (above 1: ours is better), whichever way is better."""
    r = ratio(ours, reference)
    if r is None or r == 0:
        return None
    return r if figure.higher_is_better else 1 / r




def missing_reason(side: Optional[Side], key: str) -> Optional[str]:
    if side is None:
        return None
    return side.errors.get(FIGURE_BY_KEY[key].workload)


def build_figures(ours: Values, reference: Optional[Values], ours_side: Side,
                  ref_side: Optional[Side], floor_side: Side, sizes: Params) -> Dict[str, Dict[str, Any]]:
    """One row per figure that was measured, or that was attempted and failed.

    ``sizes`` fills the labels' placeholders, so a --quick run says it
    drained 500 jobs, not 2,000.
    """
    table: Dict[str, Dict[str, Any]] = {}
    for figure in FIGURES:
        # The floor involves no library: one value, measured with our driver settings.
        is_floor = figure.key.startswith("floor")
        our_side = floor_side if is_floor else ours_side
        other = None if is_floor else ref_side
        o = ours.get(figure.key)
        r = None if reference is None or is_floor else reference.get(figure.key)
        our_error = None if o is not None else missing_reason(our_side, figure.key)
        ref_error = None if other is None or r is not None else (
            missing_reason(other, figure.key) or "not measured")
        if o is None and r is None and our_error is None:
            continue  # not part of this run (--only, or a figure of the other backend)
        table[figure.key] = {
            "label": figure.label.format_map(sizes), "unit": figure.unit,
            "higher_is_better": figure.higher_is_better,
            "ours": o, "reference": r,
            "ratio": ratio(o, r), "advantage": advantage(figure, o, r),
            "ours_reps": our_side.reps.get(figure.key, []),
            "reference_reps": [] if other is None else other.reps.get(figure.key, []),
            "ours_error": our_error, "reference_error": ref_error,
        }
    return table


# ---------------------------------------------------------------- targets (issue 19)

Table = Dict[str, Dict[str, Any]]
Check = Callable[[Table, str], Tuple[str, Optional[bool]]]


@dataclass(frozen=True)
class Target:
    name: str
    requirement: str
    check: Check


def _value(table: Table, key: str, side: str = "ours") -> Optional[float]:
    row = table.get(key)
    return None if row is None else row.get(side)


def _by_backend(postgres: float, sqlite: float) -> Callable[[str], float]:
    return lambda backend: postgres if backend == "postgres" else sqlite


def _at_most(key: str, limit: Callable[[str], float], unit: str) -> Check:
    def check(table: Table, backend: str) -> Tuple[str, Optional[bool]]:
        v = _value(table, key)
        return ("n/a", None) if v is None else (f"{v:.3g} {unit}", v <= limit(backend))
    return check


def _scaling_target(table: Table, backend: str) -> Tuple[str, Optional[bool]]:
    v = _value(table, "thr16_over_1")
    return ("n/a", None) if v is None else (f"{v:.2f}x", v >= (3.0 if backend == "postgres" else 2.0))


def _queue_target(table: Table, backend: str) -> Tuple[str, Optional[bool]]:
    adv = (table.get("queue_jps") or {}).get("advantage")
    threads = _value(table, "queue_threads")
    if threads is None:
        return "n/a", None
    text = f"{'n/a' if adv is None else f'{adv:.2f}x'} the reference, {threads:.0f} threads"
    return text, None if adv is None else (adv >= 6 and threads <= 64)


def _round_trip_target(table: Table, backend: str) -> Tuple[str, Optional[bool]]:
    rt, floor = _value(table, "rt1_ms"), _value(table, "floor_ms")
    if rt is None or not floor:
        return "n/a", None
    return f"{rt:.3f} ms = {rt / floor:.1f} floors", rt / floor <= 5


def _two_process_target(table: Table, backend: str) -> Tuple[str, Optional[bool]]:
    rt, ev = _value(table, "rt2_ms"), _value(table, "ev2_ms")
    if rt is None or ev is None:
        return "n/a", None
    text = f"send/recv {rt:.1f} ms, event {ev:.1f} ms"
    return (text, rt < 10 and ev < 10) if backend == "sqlite" else (text + " (SQLite target)", None)


TARGETS: Tuple[Target, ...] = (
    Target("queue of 2,000 jobs: jobs/s, peak threads", "at least 6x the reference, at most 64 threads",
           _queue_target),
    Target("recovery of 1,000 pending workflows", "under 0.7 s",
           _at_most("recovery_s", lambda _: 0.7, "s")),
    Target("3-step workflows, 16 threads over 1 thread", "at least 3x (PostgreSQL), 2x (SQLite)",
           _scaling_target),
    Target("send/recv round trip in one process", "at most 5 commit floors", _round_trip_target),
    Target("send/recv and event wake-up, two processes", "under 10 ms on SQLite", _two_process_target),
    Target("CPU per step", "at most 60 us (PostgreSQL), 100 us (SQLite)",
           _at_most("cpu_step_us", _by_backend(60, 100), "us")),
    Target("CPU per empty workflow", "at most 120 us (PostgreSQL), 200 us (SQLite)",
           _at_most("cpu_wf_us", _by_backend(120, 200), "us")),
)

# A figure this much worse than the baseline run's counts as a regression.
REGRESSION = 1.10


def regressions(table: Table, baseline: Table) -> List[str]:
    """The figures of ``table`` more than 10% worse than the same figure in ``baseline``."""
    worse = []
    for key, row in table.items():
        now, then = row.get("ours"), (baseline.get(key) or {}).get("ours")
        if now is None or then is None or key.startswith("floor") or not now or not then:
            continue
        ratio = then / now if row["higher_is_better"] else now / then
        if ratio > REGRESSION:
            worse.append(f"{key} {ratio:.2f}x worse")
    return worse


def _baseline_target(table: Table, baseline: Optional[Table]) -> Dict[str, Any]:
    row: Dict[str, Any] = {"target": "no figure slower than the baseline run",
                           "requirement": "by at most 10%", "measured": "n/a (no --baseline)", "met": None}
    if baseline is not None:
        worse = regressions(table, baseline)
        row.update(measured=", ".join(worse) or "none slower", met=not worse)
    return row


def evaluate_targets(table: Table, backend: str, baseline: Optional[Table] = None) -> List[Dict[str, Any]]:
    rows = []
    for target in TARGETS:
        measured, met = target.check(table, backend)
        rows.append({"target": target.name, "requirement": target.requirement,
                     "measured": measured, "met": met})
    rows.append(_baseline_target(table, baseline))
    return rows


# ---------------------------------------------------------------- output

def fmt(value: Optional[float], digits: int) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def print_table(table: Dict[str, Dict[str, Any]], targets: List[Dict[str, Any]], backend: str,
                with_reference: bool) -> None:
    head = f"{'figure (' + backend + ')':<54} {'unit':>7} {'ours':>10}"
    if with_reference:
        head += f" {'reference':>10} {'ours/ref':>9}  better"
    print(head)
    print("-" * len(head))
    for key, row in table.items():
        digits = FIGURE_BY_KEY[key].digits
        line = f"{row['label']:<54} {row['unit']:>7} {fmt(row['ours'], digits):>10}"
        if with_reference:
            line += (f" {'-' if key.startswith('floor') else fmt(row['reference'], digits):>10}"
                     f" {fmt(row['ratio'], 2):>9}  {_better_text(row)}")
        print(line)
    _print_notes(table)
    print()
    print(f"{'target (issue 19)':<56} {'requirement':<46} {'measured':<34} met")
    for t in targets:
        met = "-" if t["met"] is None else ("yes" if t["met"] else "NO")
        print(f"{t['target']:<56} {t['requirement']:<46} {t['measured']:<34} {met}")


def _better_text(row: Dict[str, Any]) -> str:
    adv = row.get("advantage")
    if adv is None:
        return ""
    return f"ours {adv:.2f}x" if adv >= 1 else f"ref {1 / adv:.2f}x"


def _print_notes(table: Dict[str, Dict[str, Any]]) -> None:
    notes = {(side, row[f"{side}_error"]) for row in table.values()
             for side in ("ours", "reference") if row.get(f"{side}_error")}
    for side, reason in sorted(notes):
        print(f"  n/a for {side}: {reason}")


def machine() -> Dict[str, Any]:
    return {"cpu": _proc_field("/proc/cpuinfo", "model name"), "cpus": os.cpu_count(),
            "memory_gb": round(int(_proc_field("/proc/meminfo", "MemTotal").split()[0]) / 1024 ** 2, 1),
            "kernel": platform.release(), "python": platform.python_version()}


def _proc_field(path: str, name: str) -> str:
    """The first ``name: value`` of a /proc file ("0" if absent)."""
    with open(path) as lines:
        for line in lines:
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    return "0"


# ---------------------------------------------------------------- main

def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--url", help="base system database URL; each side gets its own database "
                        "derived from it (default: a temporary SQLite file, or "
                        f"{dbadmin.DEFAULT_POSTGRES_URL})")
    parser.add_argument("--reference", metavar="PYTHON",
                        help="interpreter with DBOS Transact installed, run side by side")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for our library (default: this one)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of about a minute")
    parser.add_argument("--reps", type=int, help="repetitions of every workload (overrides the plan)")
    parser.add_argument("--only", nargs="+", choices=[w.name for w in PLAN], help="run only these workloads")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--json-out", metavar="FILE", help="also write the JSON here")
    parser.add_argument("--baseline", metavar="FILE",
                        help="an earlier run's JSON (--json-out): no figure may be more than 10%% worse")
    return parser.parse_args(argv)


def _baseline(path: Optional[str]) -> Optional[Table]:
    if path is None:
        return None
    with open(path) as f:
        figures: Table = json.load(f)["figures"]
    return figures


def base_url(args: argparse.Namespace, scratch: str) -> str:
    if args.url:
        return str(args.url)
    if args.backend == "sqlite":
        return f"sqlite:///{os.path.join(scratch, 'bench.sqlite')}"
    return dbadmin.DEFAULT_POSTGRES_URL


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="dbos-bench-")
    try:
        report = run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json_out:
        os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
        with open(args.json_out, "w") as out:
            json.dump(report, out, indent=2)
            out.write("\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report["figures"], report["targets"], args.backend, args.reference is not None)


def plan_sizes(plan: Sequence[Workload], quick: bool) -> Params:
    """Workload sizes by name, for labels ("queue of 2,000 jobs")."""
    sizes: Params = {"jobs": "N", "workflows": "N"}
    for w in plan:
        for key, value in (w.quick_params if quick else w.params).items():
            if key in sizes:
                sizes[key] = f"{value:,}"
    return sizes


def run(args: argparse.Namespace, scratch: str) -> Dict[str, Any]:
    base = base_url(args, scratch)
    ours = Side("ours", args.python, dbadmin.url_for(args.backend, base, "ours"))
    floor_side = Side("floor", args.python, dbadmin.url_for(args.backend, base, "floor"))
    ref = None if args.reference is None else Side(
        "reference", args.reference, dbadmin.url_for(args.backend, base, "reference"))
    plan = [w for w in PLAN if not args.only or w.name in args.only]
    started = time.time()
    load_before = os.getloadavg()
    run_plan([s for s in (ours, ref) if s is not None], floor_side, plan, args.quick, args.reps, scratch)
    floor_values = medians(floor_side)
    ours_values = {**medians(ours), **floor_values}
    add_derived(ours_values, floor_values.get("floor_ms"))
    ref_values = None
    if ref is not None:
        ref_values = medians(ref)
        add_derived(ref_values, floor_values.get("floor_ms"))
    table = build_figures(ours_values, ref_values, ours, ref, floor_side, plan_sizes(plan, args.quick))
    return {
        "backend": args.backend,
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "quick": args.quick,
        "elapsed_s": round(time.time() - started, 1),
        # Other work on the machine skews absolute figures (the alternation
        # keeps the ratios fair): the load averages say how busy it was.
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "plan": {w.name: {"reps": args.reps or (w.quick_reps if args.quick else w.reps),
                          "params": w.quick_params if args.quick else w.params} for w in plan},
        "ours": {"python": ours.python, **(ours.library or floor_side.library)},
        "reference": None if ref is None else {"python": ref.python, **ref.library},
        "figures": table,
        "targets": evaluate_targets(table, args.backend, _baseline(args.baseline)),
    }


if __name__ == "__main__":
    main()
