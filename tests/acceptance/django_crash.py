"""Places an order in the example Django shop, then dies by SIGKILL right
after the order's transaction commits and before DBOS checkpoints it.

    python django_crash.py WORKFLOW_ID

Run from examples/django_app with it on PYTHONPATH (DATABASE_URL picks the
database). Migrates, launches DBOS, POSTs through Django's test client, and
prints "COMMITTED" just before killing itself.
"""

from __future__ import annotations

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


def main(workflow_id: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    from dbos import DBOS
    from dbos.contrib.django import launch

    call_command("migrate", verbosity=0)
    crash_before_checkpoint("create_order")
    launch()
    response = Client().post("/orders/", {"item": "lamp", "quantity": 3},
                             content_type="application/json",
                             headers={"Idempotency-Key": workflow_id})
    assert response.status_code == 202, response.content
    DBOS.retrieve_workflow(workflow_id).get_result()  # never returns: the process dies first
    print("NOT KILLED", flush=True)
    sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1])
