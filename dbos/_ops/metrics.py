"""The figures of the metrics endpoints: what the engine counted in this
process, and gauges read from the system database at scrape time, as JSON
(``GET /dbos-metrics.json``, for the dashboard) and in Prometheus's text
exposition format 0.0.4 (``GET /metrics``).

Hand-written rather than through ``prometheus_client``: the format is a few
lines of text, the counters are per-thread tallies summed at scrape and the
gauges are one query each, so the library would only be a custom collector
around the same code, and a dependency for every user who wants a scrape.
"""

from __future__ import annotations

import math
import time
from typing import Any, Dict, Iterator, List, Tuple

from .._engine import metrics as counts
from .._engine.engine import Engine

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Counter name, help, and the workflow event it counts.
_WORKFLOW_COUNTERS: Tuple[Tuple[str, str, str], ...] = (
    ("dbos_workflows_started_total", "Workflow executions started in this process, by workflow name", "started"),
    ("dbos_workflows_completed_total", "Workflow executions here that ended in SUCCESS", "completed"),
    ("dbos_workflows_failed_total", "Workflow executions here that ended in ERROR", "failed"),
    ("dbos_workflows_cancelled_total", "Workflow executions here that ended CANCELLED", "cancelled"),
)


def figures(engine: Engine) -> Dict[str, Any]:
    """Every figure, as the JSON of ``GET /dbos-metrics.json``."""
    tally = counts.snapshot()
    app = engine.identity.app_name
    return {
        "time_ms": int(time.time() * 1000),
        "executor_id": engine.identity.executor_id,
        "workflows": _workflows(tally),
        "steps": [_step(name, row) for name, row in sorted(tally.steps.items())],
        "recovered": tally.recovered,
        "queues": sorted(engine.sysdb.queue_depths(app), key=lambda q: (q["queue"], q["status"])),
        "executors": engine.sysdb.executor_counts(app),
    }


def _workflows(tally: counts.Tally) -> List[Dict[str, Any]]:
    names = sorted({name for name, _ in tally.workflows})
    return [{"name": name, **{event: tally.workflows.get((name, event), 0) for event in counts.EVENTS}}
            for name in names]


def _step(name: str, row: List[float]) -> Dict[str, Any]:
    """A step's histogram: cumulative counts per upper bound, ``None`` for the last (+Inf)."""
    cumulative, buckets = 0, []
    for bound, count in zip((*counts.STEP_BUCKETS, None), row[:-1]):
        cumulative += int(count)
        buckets.append([bound, cumulative])
    return {"name": name, "count": cumulative, "sum_seconds": row[-1], "buckets": buckets}


def exposition(found: Dict[str, Any]) -> str:
    """``figures`` in Prometheus's text format."""
    return "".join(f"{line}\n" for line in _lines(found))


def _lines(found: Dict[str, Any]) -> Iterator[str]:
    for metric, help_text, event in _WORKFLOW_COUNTERS:
        yield from _header(metric, help_text, "counter")
        for row in found["workflows"]:
            yield f"{metric}{_labels(name=row['name'])} {row[event]}"
    yield from _header("dbos_step_duration_seconds", "Time a step took here, all its attempts", "histogram")
    for step in found["steps"]:
        for bound, cumulative in step["buckets"]:
            le = "+Inf" if bound is None else _number(bound)
            yield f"dbos_step_duration_seconds_bucket{_labels(name=step['name'], le=le)} {cumulative}"
        yield f"dbos_step_duration_seconds_sum{_labels(name=step['name'])} {_number(step['sum_seconds'])}"
        yield f"dbos_step_duration_seconds_count{_labels(name=step['name'])} {step['count']}"
    yield from _header("dbos_workflows_recovered_total", "PENDING workflows claimed for recovery here", "counter")
    yield f"dbos_workflows_recovered_total {found['recovered']}"
    yield from _gauges(found)


def _gauges(found: Dict[str, Any]) -> Iterator[str]:
    yield from _header("dbos_queue_depth", "Queued workflows by queue and status (ENQUEUED, PENDING, DELAYED)",
                       "gauge")
    for q in found["queues"]:
        yield f"dbos_queue_depth{_labels(queue=q['queue'], status=q['status'])} {q['depth']}"
    yield from _header("dbos_queue_oldest_wait_seconds", "How long the oldest ENQUEUED workflow of a queue "
                       "has waited", "gauge")
    for q in found["queues"]:
        if q["status"] == "ENQUEUED":
            yield f"dbos_queue_oldest_wait_seconds{_labels(queue=q['queue'])} {_number(q['oldest_age_ms'] / 1000)}"
    yield from _header("dbos_executors", "Executors of this application holding a heartbeat, by version", "gauge")
    for version, count in sorted(found["executors"].items()):
        yield f"dbos_executors{_labels(version=version)} {count}"


def _header(metric: str, help_text: str, kind: str) -> Iterator[str]:
    yield f"# HELP {metric} {help_text}"
    yield f"# TYPE {metric} {kind}"


def _labels(**labels: str) -> str:
    inner = ",".join(f'{key}="{_escaped(value)}"' for key, value in labels.items())
    return f"{{{inner}}}"


def _escaped(value: str) -> str:
    """A label value as the format quotes it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
