"""An app the SIGTERM tests run as a child process and stop with SIGTERM.

    python sigterm_app.py run     SYS_URL COUNT_FILE WORKFLOW_ID TIMEOUT_SEC HANG(0|1)
    python sigterm_app.py recover SYS_URL COUNT_FILE WORKFLOW_ID

``run`` enqueues WORKFLOW_ID and three more jobs on a queue of concurrency 1,
so the three stay ENQUEUED behind it, and prints "IN_STEP 2" once the
workflow is inside its second step. With HANG=1 that step never returns;
with HANG=0 it returns as soon as DBOS has stopped taking work (the SIGTERM
handler has begun the shutdown), so the test knows the queue was closed
before the workflow ended. The process waits for SIGTERM, which DBOS
handles with ``shutdown_timeout_sec=TIMEOUT_SEC``. ``recover`` relaunches
the same executor and prints the workflow's result. Each step appends
"<workflow> <step>" to COUNT_FILE, outside the system database.
"""

from __future__ import annotations

import sys
import threading

from dbos import DBOS, DBOSConfig, Queue, SetWorkflowID
from dbos._queues.queue import current_intake

queue = Queue("sigterm-q", concurrency=1)
mode, sys_url, count_file, workflow_id = sys.argv[1:5]
hang = mode == "run" and sys.argv[6] == "1"


@DBOS.step()
def work(n: int) -> int:
    with open(count_file, "a") as f:
        f.write(f"{DBOS.workflow_id} {n}\n")
    if n == 2 and DBOS.workflow_id == workflow_id and mode == "run":
        print("IN_STEP 2", flush=True)
        stopped = threading.Event()
        while hang or current_intake() is not None:  # the shutdown clears the intake first
            stopped.wait(0.02)
    return n * n


@DBOS.workflow()
def squares() -> int:
    return sum(work(n) for n in range(1, 4))


def main() -> None:
    timeout = float(sys.argv[5]) if mode == "run" else 10.0
    DBOS(config=DBOSConfig(name="sigterm-app", system_database_url=sys_url, application_version="v1",
                           shutdown_timeout_sec=timeout))
    DBOS.launch()
    if mode == "run":
        with SetWorkflowID(workflow_id):
            queue.enqueue(squares)
        for n in range(3):
            with SetWorkflowID(f"{workflow_id}-behind-{n}"):
                queue.enqueue(squares)
        print("ENQUEUED", flush=True)
        threading.Event().wait()  # until SIGTERM ends the process
    print(f"RESULT {DBOS.retrieve_workflow(workflow_id).get_result()}", flush=True)
    DBOS.destroy()


if __name__ == "__main__":
    main()
