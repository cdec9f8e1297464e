"""Places an order in the example Django shop, then dies by SIGKILL right
after the order's transaction commits and before DBOS checkpoints it.

    python django_crash.py WORKFLOW_ID
    python django_crash.py ds WORKFLOW_ID CRASH(0|1) RUNS_FILE

Run from examples/django_app with it on PYTHONPATH (DATABASE_URL picks the
database). Migrates, launches DBOS, POSTs through Django's test client, and
prints "COMMITTED" just before killing itself.

The ``ds`` mode does the same with a DBOS Transact 2.x datasource,
``DjangoDatasource.create()``: its workflow creates the order in an
``@ds.transaction()`` function (each run of which appends a line to
RUNS_FILE). With CRASH=1 it dies after that commit; with CRASH=0,
``launch()`` recovers the workflow and the process prints "RESULT <order id>"
and "STEPS <json>" (from ``DBOS.list_workflow_steps``).
"""

from __future__ import annotations

import json
import os
import signal
import sys


def crash_before_checkpoint(function_name: str) -> None:
    """Die by SIGKILL between the transaction's commit and its checkpoint."""
    from dbos._sysdb.steps import StepRows

    original = StepRows.record_step

    def record_step(self: StepRows, step: object) -> str:
        if str(getattr(step, "function_name", "")).endswith(function_name):
            print("COMMITTED", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, step)  # type: ignore[arg-type]

    StepRows.record_step = record_step  # type: ignore[method-assign]


def setup() -> None:
    """Django on the example's settings, its database migrated."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def main(workflow_id: str) -> None:
    setup()
    from django.test import Client

    from dbos import DBOS
    from dbos.contrib.django import launch

    crash_before_checkpoint("create_order")
    launch()
    response = Client().post("/orders/", {"item": "lamp", "quantity": 3},
                             content_type="application/json",
                             headers={"Idempotency-Key": workflow_id})
    assert response.status_code == 202, response.content
    DBOS.retrieve_workflow(workflow_id).get_result()  # never returns: the process dies first
    print("NOT KILLED", flush=True)
    sys.exit(1)


def ds_main(workflow_id: str, crash: bool, runs_file: str) -> None:
    setup()
    from orders.models import Order  # type: ignore[import-not-found]

    from dbos import DBOS, SetWorkflowID
    from dbos.contrib.django import DjangoDatasource, launch

    ds = DjangoDatasource.create()

    @ds.transaction(name="create_order_ds")
    def create_order(item: str, quantity: int) -> int:
        with open(runs_file, "a") as f:
            f.write("ran\n")
        return int(Order.objects.create(item=item, quantity=quantity, workflow_id=DBOS.workflow_id).pk)

    @DBOS.workflow()
    def place_order_ds(item: str, quantity: int) -> int:
        return int(create_order(item, quantity))

    if crash:
        crash_before_checkpoint("create_order_ds")
    launch()
    if crash:
        with SetWorkflowID(workflow_id):
            place_order_ds("kettle", 1)  # never returns: the process dies first
        print("NOT KILLED", flush=True)
        sys.exit(1)
    result = DBOS.retrieve_workflow(workflow_id).get_result()  # recovered by launch()
    steps = [[s["function_id"], s["function_name"], s["output"]] for s in DBOS.list_workflow_steps(workflow_id)]
    print(f"RESULT {result}", flush=True)
    print(f"STEPS {json.dumps(steps)}", flush=True)
    DBOS.destroy()


if __name__ == "__main__":
    if sys.argv[1] == "ds":
        ds_main(sys.argv[2], sys.argv[3] == "1", sys.argv[4])
    else:
        main(sys.argv[1])
