"""Markdown tables from bench.py's JSON results, for the README.

    .venv/bin/python benchmarks/report.py benchmarks/results/*-sqlite.json benchmarks/results/*-postgres.json

One column group per results file (a backend each): ours, the reference and
how many times better ours is; then the targets, met or not.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List, Optional, Sequence

Report = Dict[str, Any]
NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def number(value: Optional[float], unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "threads":
        return f"{value:.0f}"
    digits = 0 if abs(value) >= 100 else (1 if abs(value) >= 10 else (2 if abs(value) >= 1 else 3))
    return f"{value:,.{digits}f} {unit}".strip()


def times(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.1f}x"


def figures_table(reports: Sequence[Report]) -> List[str]:
    head = "| figure | " + " | ".join(
        f"{NAMES[r['backend']]} | DBOS Transact | ours better by" for r in reports) + " |"
    lines = [head, "|---|" + "---:|---:|---:|" * len(reports)]
    keys = list(dict.fromkeys(k for r in reports for k in r["figures"]))
    for key in keys:
        rows = [r["figures"].get(key) for r in reports]
        label = next(row["label"] for row in rows if row)
        cells = []
        for row in rows:
            if row is None:
                cells += ["", "", ""]
                continue
            cells += [number(row["ours"], row["unit"]), number(row["reference"], row["unit"])
                      if row["reference"] is not None else "", times(row["advantage"])
                      if row["advantage"] is not None else ""]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def targets_table(reports: Sequence[Report]) -> List[str]:
    lines = ["| target | requirement | " + " | ".join(NAMES[r["backend"]] for r in reports) + " |",
             "|---|---|" + "---|" * len(reports)]
    for index, target in enumerate(reports[0]["targets"]):
        cells = [_verdict(r["targets"][index]) for r in reports]
        lines.append(f"| {target['target']} | {target['requirement']} | " + " | ".join(cells) + " |")
    return lines


def _verdict(row: Dict[str, Any]) -> str:
    if row["met"] is None:
        return "" if row["measured"].startswith("(") else row["measured"]
    return f"{row['measured']}: {'met' if row['met'] else '**not met**'}"


def machine_line(reports: Sequence[Report]) -> str:
    m, first = reports[0]["machine"], reports[0]
    ref = first.get("reference") or {}
    return (f"Measured {first['date']} on {m['cpus']} cores ({m['cpu']}), {m['memory_gb']} GB, "
            f"Linux {m['kernel']}, Python {m['python']}; reference: DBOS Transact "
            f"{ref.get('version', 'n/a')}. Medians of {_reps(first)} repetitions per workload.")


def _reps(report: Report) -> str:
    counts = sorted({plan["reps"] for plan in report["plan"].values()})
    return " to ".join(str(c) for c in (counts[0], counts[-1])) if len(counts) > 1 else str(counts[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("results", nargs="+", help="JSON files written by bench.py --json-out")
    reports = []
    for path in parser.parse_args().results:
        with open(path) as source:
            reports.append(json.load(source))
    print(machine_line(reports), end="\n\n")
    print("\n".join(figures_table(reports)), end="\n\n")
    print("\n".join(targets_table(reports)))


if __name__ == "__main__":
    main()
