"""A small shop app whose admin server serves the dashboard, for the browser tests.

    python dashboard_app.py SYS_URL ADMIN_PORT

At start it launches DBOS (admin server on ADMIN_PORT, ``admin_dashboard:
true``), applies the ``nightly-report`` schedule and runs: three finished
``checkout`` workflows (``order-1`` .. ``order-3``, three steps each), one
that failed (``order-bad``), one whose ID is markup (``<b>bold</b>``), and
``stuck-1``, which waits for a message that never comes. Then it prints
``READY`` and waits; closing stdin shuts DBOS down (``STOPPED``).
"""

from __future__ import annotations

import sys
from typing import Any, Dict

from dbos import DBOS, DBOSConfig, SetWorkflowID

MARKUP_ID = "<b>bold</b>"


@DBOS.step()
def reserve(order: str) -> str:
    return f"reserved {order}"


@DBOS.step()
def charge(order: str) -> int:
    if order == "bad":
        raise ValueError(f"card declined for {order}")
    return 42


@DBOS.step()
def ship(order: str) -> str:
    return f"shipped {order}"


@DBOS.workflow()
def checkout(order: str) -> Dict[str, Any]:
    reserve(order)
    paid = charge(order)
    DBOS.set_event("paid", paid)
    return {"order": order, "paid": paid, "note": ship(order)}


@DBOS.workflow()
def waiting() -> Any:
    return DBOS.recv("go", timeout_seconds=3600)


@DBOS.workflow()
def nightly_report(scheduled_time: Any, context: Any) -> str:
    return f"report for {scheduled_time}"


def start_workflows() -> None:
    for order in ("1", "2", "3"):
        with SetWorkflowID(f"order-{order}"):
            DBOS.start_workflow(checkout, order).get_result()
    with SetWorkflowID("order-bad"):
        handle = DBOS.start_workflow(checkout, "bad")
    try:
        handle.get_result()
    except ValueError:
        pass
    with SetWorkflowID(MARKUP_ID):
        DBOS.start_workflow(checkout, "<i>x</i>").get_result()
    with SetWorkflowID("stuck-1"):
        DBOS.start_workflow(waiting)


def main(sys_url: str, port: int) -> None:
    config: DBOSConfig = {"name": "dashboard-shop", "system_database_url": sys_url, "run_admin_server": True,
                          "admin_port": port, "admin_dashboard": True, "executor_id": "shop-1"}
    DBOS(config=config)
    DBOS.launch()
    DBOS.apply_schedules([{"schedule_name": "nightly-report", "workflow_fn": nightly_report,
                           "schedule": "0 3 * * *", "context": {"to": "ops"}}])
    start_workflows()
    print("READY", flush=True)
    for _ in sys.stdin:
        pass
    DBOS.cancel_workflows(["stuck-1"])
    DBOS.destroy(workflow_completion_timeout_sec=10)
    print("STOPPED", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
