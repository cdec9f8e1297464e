"""A small durable app that the acceptance tests run in child processes and kill.

    python crash_app.py steps     SYS_URL COUNT_FILE WORKFLOW_ID BLOCK_AT
    python crash_app.py txn       SYS_URL APP_URL    WORKFLOW_ID CRASH(0|1)

Every step appends its number to COUNT_FILE, outside the system database, so
the test can count executions. With BLOCK_AT=k the process prints
"IN_STEP k" and hangs inside step k, for the parent to SIGKILL it. In the
txn mode with CRASH=1 the process kills itself right after the transaction
commits and before its checkpoint is written.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import peewee as pw

from dbos import DBOS, DBOSConfig

STEPS = 5


def steps_app(sys_url: str, count_file: str, workflow_id: str, block_at: int) -> None:
    @DBOS.step()
    def work(n: int) -> int:
        with open(count_file, "a") as f:
            f.write(f"{n}\n")
        if n == block_at:
            print(f"IN_STEP {n}", flush=True)
            threading.Event().wait()  # hang here until killed
        return n * n

    @DBOS.workflow()
    def squares() -> int:
        return sum(work(n) for n in range(1, STEPS + 1))

    DBOS(config=DBOSConfig(name="crash-app", system_database_url=sys_url,
                           application_version="v1"))
    DBOS.launch()
    from dbos import SetWorkflowID

    if block_at:
        with SetWorkflowID(workflow_id):
            squares()
    else:
        # The relaunch recovers the workflow by itself; wait for its outcome.
        print(f"RESULT {DBOS.retrieve_workflow(workflow_id).get_result()}", flush=True)
    DBOS.destroy()


class Counter(pw.Model):
    name = pw.TextField(primary_key=True)
    value = pw.IntegerField()


def txn_app(sys_url: str, app_url: str, workflow_id: str, crash: bool) -> None:
    @DBOS.transaction()
    def bump() -> int:
        Counter.insert(name="hits", value=1).on_conflict(
            conflict_target=[Counter.name], update={Counter.value: Counter.value + 1}
        ).execute()
        return int(Counter.get_by_id("hits").value)

    @DBOS.workflow()
    def count_once() -> int:
        return bump()

    if crash:
        _crash_before_checkpoint("bump")
    DBOS(config=DBOSConfig(name="crash-app", system_database_url=sys_url,
                           application_database_url=app_url, application_version="v1"))
    DBOS.launch()
    engine_db = DBOS.app_datasource.database
    Counter.bind(engine_db)
    engine_db.create_tables([Counter], safe=True)
    if crash:
        from dbos import SetWorkflowID

        with SetWorkflowID(workflow_id):
            count_once()
    else:
        print(f"RESULT {DBOS.retrieve_workflow(workflow_id).get_result()}", flush=True)
        print(f"COUNTER {Counter.get_by_id('hits').value}", flush=True)
    DBOS.destroy()


def _crash_before_checkpoint(function_name: str) -> None:
    """Die by SIGKILL between the transaction's commit and its checkpoint."""
    from dbos.sysdb.workflows import WorkflowStore

    original = WorkflowStore.checkpoint

    def checkpoint(self: WorkflowStore, step: object) -> str:
        if str(getattr(step, "function_name", "")).endswith(function_name):
            print("COMMITTED", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, step)  # type: ignore[arg-type]

    WorkflowStore.checkpoint = checkpoint  # type: ignore[method-assign]


if __name__ == "__main__":
    mode, sys_url, second, workflow_id, flag = sys.argv[1:6]
    if mode == "steps":
        steps_app(sys_url, second, workflow_id, int(flag))
    else:
        txn_app(sys_url, second, workflow_id, flag == "1")
