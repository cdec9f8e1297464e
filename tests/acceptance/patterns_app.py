"""A queue app in the shape of DBOS's queue-patterns demo, run as a real process.

    python patterns_app.py SYS_URL

It launches, runs each pattern, prints one line ``RESULT <json>`` and exits:

* fair queueing: each tenant's batches go on a manager queue partitioned by
  tenant (one batch per tenant at a time); a batch fans its tasks out on a
  shared work queue with a global concurrency limit, so a tenant with one
  small batch is not stuck behind another tenant's many big ones;
* a rate-limited queue kept in the database, enqueued on by queue name;
* enqueueing by workflow name, and a deduplicated enqueue that returns the
  workflow already holding the deduplication ID.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from typing import Any, Dict, List

from dbos import DBOS, DBOSConfig, Queue, QueueRateLimit, SetEnqueueOptions

WORK_CONCURRENCY = 3
RATE_LIMIT = QueueRateLimit(limit=3, period=1.0)
TASK_S = 0.02
POLL_S = 0.05


class Tally:
    """Peaks of what runs at once, per label, across this process's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()

    def enter(self, *labels: str) -> None:
        with self._lock:
            for label in labels:
                self.running[label] += 1
                self.peak[label] = max(self.peak[label], self.running[label])

    def leave(self, *labels: str) -> None:
        with self._lock:
            for label in labels:
                self.running[label] -= 1


tally = Tally()
finished: Dict[str, float] = {}  # batch -> when it finished
rate_starts: List[float] = []

# The demo declares its queues in code like this (the deprecated partition_queue shape).
manager_queue = Queue("tenant-manager", partition_queue=True, concurrency=1, polling_interval_sec=POLL_S)
work_queue = Queue("work", concurrency=WORK_CONCURRENCY, polling_interval_sec=POLL_S)


@DBOS.workflow(name="process_task")
def process_task(tenant: str, task: int) -> str:
    tally.enter("work", f"work:{tenant}")
    time.sleep(TASK_S)
    tally.leave("work", f"work:{tenant}")
    return f"{tenant}:{task}"


@DBOS.workflow(name="tenant_batch")
def tenant_batch(tenant: str, batch: str, tasks: int) -> List[str]:
    tally.enter(f"batch:{tenant}")
    handles = [work_queue.enqueue(process_task, tenant, n) for n in range(tasks)]
    results = [h.get_result() for h in handles]
    tally.leave(f"batch:{tenant}")
    finished[batch] = time.monotonic()
    return results


@DBOS.workflow(name="stamp")
def stamp(n: int) -> int:
    rate_starts.append(time.monotonic())
    return n


def fair_queueing() -> Dict[str, Any]:
    handles = []
    for batch in range(4):
        with SetEnqueueOptions(queue_partition_key="big-tenant"):
            handles.append(manager_queue.enqueue(tenant_batch, "big-tenant", f"big-{batch}", 6))
    with SetEnqueueOptions(queue_partition_key="small-tenant"):
        handles.append(manager_queue.enqueue(tenant_batch, "small-tenant", "small-0", 2))
    results = [h.get_result() for h in handles]
    return {"results": results, "peak": dict(tally.peak),
            "small_before_last_big": finished["small-0"] < finished["big-3"]}


def rate_limited() -> Dict[str, Any]:
    queue = DBOS.register_queue("rate-limited", limiter=RATE_LIMIT, polling_interval_sec=POLL_S)
    handles = [DBOS.enqueue_workflow("rate-limited", stamp, n) for n in range(6)]
    results = [h.get_result() for h in handles]
    starts = sorted(rate_starts)
    return {"results": results, "limiter": queue.limiter,
            "gaps": [later - earlier for earlier, later in zip(starts, starts[3:])]}


def by_name_and_dedup() -> Dict[str, Any]:
    by_name = DBOS.enqueue_workflow_with_options({"workflow_name": "process_task", "queue_name": "work"},
                                                 "by-name", 7)
    with SetEnqueueOptions(deduplication_id="nightly", duplication_policy="return-existing", priority=1):
        first = DBOS.enqueue_workflow_with_options({"workflow_name": "stamp", "queue_name": "rate-limited"}, 1)
        second = DBOS.enqueue_workflow_with_options({"workflow_name": "stamp", "queue_name": "rate-limited"}, 2)
    return {"by_name": by_name.get_result(), "same": first.workflow_id == second.workflow_id,
            "dedup_result": second.get_result()}


def main(sys_url: str) -> None:
    DBOS(config=DBOSConfig(name="patterns-app", system_database_url=sys_url))
    DBOS.launch()
    report = {"fair": fair_queueing(), "rate": rate_limited(), "named": by_name_and_dedup()}
    print("RESULT " + json.dumps(report), flush=True)
    DBOS.destroy()


if __name__ == "__main__":
    main(sys.argv[1])
