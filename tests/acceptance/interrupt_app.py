"""An app run with no configuration file that the Ctrl-C test interrupts.

    python interrupt_app.py direct|background     (in an empty folder)

``DBOS()`` finds no dbos_config.yaml, so it runs on SQLite in a file named
after the folder, and says so. The workflow ``interrupted`` prints
"IN_STEP" from its step and waits there until the process is interrupted.
``direct`` calls it on the main thread; ``background`` starts it on DBOS's
threads and waits for its result, so the interrupt meets the wait.
"""

from __future__ import annotations

import sys
import threading

from dbos import DBOS, SetWorkflowID


@DBOS.step()
def wait_for_ctrl_c() -> None:
    print("IN_STEP", flush=True)
    threading.Event().wait()  # interruptible: SIGINT raises KeyboardInterrupt here


@DBOS.workflow()
def interrupted() -> str:
    wait_for_ctrl_c()
    return "never"


if __name__ == "__main__":
    DBOS()
    DBOS.launch()
    with SetWorkflowID("interrupted"):
        if sys.argv[1] == "direct":
            interrupted()
        else:
            DBOS.start_workflow(interrupted).get_result()
