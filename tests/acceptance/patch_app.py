"""An app upgraded under its running workflows with DBOS.patch, run as a real process.

    python patch_app.py SYS_URL LEDGER REVISION [HOLD_ID ...]

REVISION is the code the process runs: ``v1`` (the workflow calls
``charge_card``), ``v2`` (``DBOS.patch("invoice")`` puts ``send_invoice`` in
its place for new workflows), ``v3`` (the patch deprecated: ``send_invoice``
only). Each step appends ``<step> <workflow ID>`` to LEDGER. The ``ship``
step of each workflow named in HOLD_ID prints ``HOLDING <ID>`` and hangs
there until the test kills the process. Commands on stdin, one a line:
``start ID`` (answers ``STARTED ID``) and ``result ID`` (``RESULT ID value``,
waiting for it; recovered workflows included). Closing stdin shuts down
(``STOPPED``).
"""

from __future__ import annotations

import sys
import threading

from dbos import DBOS, DBOSConfig, SetWorkflowID

SYS_URL, LEDGER, REVISION = sys.argv[1], sys.argv[2], sys.argv[3]
HOLD = set(sys.argv[4:])


def note(step: str) -> None:
    with open(LEDGER, "a") as f:
        f.write(f"{step} {DBOS.workflow_id}\n")


@DBOS.step()
def reserve() -> None:
    note("reserve")


@DBOS.step()
def charge_card() -> str:
    note("charge_card")
    return "charged"


@DBOS.step()
def send_invoice() -> str:
    note("send_invoice")
    return "invoiced"


@DBOS.step()
def ship() -> None:
    note("ship")
    if DBOS.workflow_id in HOLD:
        print(f"HOLDING {DBOS.workflow_id}", flush=True)
        threading.Event().wait()  # until killed


@DBOS.workflow(name="order")
def order() -> str:
    reserve()
    if REVISION == "v1":
        paid = charge_card()
    elif REVISION == "v2":
        paid = send_invoice() if DBOS.patch("invoice") else charge_card()
    else:
        DBOS.deprecate_patch("invoice")
        paid = send_invoice()
    ship()
    return paid


def main() -> None:
    DBOS(config=DBOSConfig(name="patch-app", system_database_url=SYS_URL, enable_patching=True))
    DBOS.launch()
    print("READY", flush=True)
    for line in sys.stdin:
        command, workflow_id = line.split()
        if command == "start":
            with SetWorkflowID(workflow_id):
                DBOS.start_workflow(order)
            print(f"STARTED {workflow_id}", flush=True)
        elif command == "result":
            print(f"RESULT {workflow_id} {DBOS.retrieve_workflow(workflow_id).get_result()}", flush=True)
    DBOS.destroy()
    print("STOPPED", flush=True)


if __name__ == "__main__":
    main()
