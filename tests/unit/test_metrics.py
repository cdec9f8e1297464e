"""The engine's per-thread counts, summed at scrape, and Prometheus's text format."""

from __future__ import annotations

import re
import threading
from typing import Any, Dict, List

from dbos._engine import metrics
from dbos._ops.metrics import exposition

# One sample line of the text format: a name, optional labels, a value.
SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? '
                    r'(-?[0-9.e+-]+|\+Inf|-Inf|NaN)$')


def test_counts_from_many_threads_are_summed_and_kept_after_the_threads_end() -> None:
    before = metrics.snapshot()
    name = "unit-threads-wf"

    def work() -> None:
        for _ in range(100):
            metrics.workflow_event(name, "started")
            metrics.workflow_ended(name, "SUCCESS")
            metrics.step_took("unit-threads-step", 0.003)
        metrics.workflow_ended(name, "PENDING")  # left for recovery: not an ending
        metrics.recovered(2)

    # More threads than the fold threshold: ended threads' tallies are folded, not lost.
    for _ in range(3):
        threads = [threading.Thread(target=work) for _ in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    after = metrics.snapshot()
    assert after.workflows[(name, "started")] == 9000
    assert after.workflows[(name, "completed")] == 9000
    assert (name, "failed") not in after.workflows
    assert after.recovered - before.recovered == 180
    row = after.steps["unit-threads-step"]
    assert row[metrics.STEP_BUCKETS.index(0.005)] == 9000 and sum(row[:-1]) == 9000
    assert abs(row[-1] - 27.0) < 1e-6
    assert len(metrics._tallies) <= 64 + 30


def figures(workflows: List[Dict[str, Any]], steps: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {"workflows": workflows, "steps": steps, "recovered": 3,
            "queues": [{"queue": "q", "status": "ENQUEUED", "depth": 2, "oldest_age_ms": 1500},
                       {"queue": "q", "status": "PENDING", "depth": 1, "oldest_age_ms": 10}],
            "executors": {"v1": 2}}


def test_the_text_format_escapes_labels_and_gives_cumulative_buckets() -> None:
    odd = 'a "quoted"\\name\nwith a newline'
    text = exposition(figures(
        [{"name": odd, "started": 4, "completed": 2, "failed": 1, "cancelled": 1}],
        [{"name": "s", "count": 3, "sum_seconds": 0.5, "buckets": [[0.1, 2], [1.0, 3], [None, 3]]}]))
    lines = text.splitlines()
    assert text.endswith("\n")
    for line in lines:
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or SAMPLE.match(line), line
    assert 'dbos_workflows_started_total{name="a \\"quoted\\"\\\\name\\nwith a newline"} 4' in lines
    assert 'dbos_step_duration_seconds_bucket{name="s",le="0.1"} 2' in lines
    assert 'dbos_step_duration_seconds_bucket{name="s",le="+Inf"} 3' in lines
    assert 'dbos_step_duration_seconds_count{name="s"} 3' in lines
    assert "dbos_workflows_recovered_total 3" in lines
    assert 'dbos_queue_depth{queue="q",status="ENQUEUED"} 2' in lines
    assert 'dbos_queue_oldest_wait_seconds{queue="q"} 1.5' in lines
    assert 'dbos_executors{version="v1"} 2' in lines
    # Each metric's TYPE comes once, before its samples.
    types = [line.split()[2] for line in lines if line.startswith("# TYPE ")]
    assert len(types) == len(set(types)) == 9
