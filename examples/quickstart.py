"""The example app: a durable workflow that survives being killed.

Run it from the repository root (it reads ../dbos_config.yaml there):

    python examples/quickstart.py

It runs a five-step workflow, one step a second. Kill it part-way (Ctrl-C,
or `kill -9`), run it again, and it carries on from the step it was in:
completed steps are not run again. Once it has finished, running it again
prints the recorded result at once. `dbos reset -y` starts over.
"""

import time

from dbos import DBOS, SetWorkflowID

WORKFLOW_ID = "quickstart-1"
STEPS = 5


@DBOS.step()
def do_step(n: int) -> str:
    print(f"  step {n}: working...", flush=True)
    time.sleep(1)
    print(f"  step {n}: done", flush=True)
    return f"step {n}"


@DBOS.workflow()
def quickstart_workflow() -> str:
    done = [do_step(n) for n in range(1, STEPS + 1)]
    return f"finished {len(done)} steps"


def main() -> None:
    DBOS()  # reads dbos_config.yaml from the working directory
    DBOS.launch()  # resumes the workflow if an earlier run was killed
    print(f"Running workflow {WORKFLOW_ID} (kill me part-way, then run me again)")
    with SetWorkflowID(WORKFLOW_ID):
        # If the workflow is already running (recovered at launch) this waits
        # for it; if it has finished, this returns its recorded result.
        result = quickstart_workflow()
    print(f"Workflow {WORKFLOW_ID}: {result}")
    DBOS.destroy()


if __name__ == "__main__":
    main()
