"""A schedule app, shaped like DBOS's demo apps, that the acceptance tests run as real processes.

    python schedule_app.py SYS_URL RUN_FILE EXECUTOR_ID

At start it launches DBOS and applies its schedules (``DBOS.apply_schedules``,
an upsert, so every process and every restart can do it): ``every-second``
runs ``record_run`` each second with a context. The scheduled workflow
appends ``<scheduled time> <executor> <workflow ID> <context>`` to RUN_FILE.
Then it reads commands from stdin, one a line, like the demo apps' buttons,
answering each on stdout:

    pause / resume   pause or resume the schedule        -> PAUSED / RESUMED
    trigger          run it now, once                    -> TRIGGERED <workflow ID>
    status           the schedule's status and runs      -> STATUS <status> <cron> <runs>
    apply <cron>     redefine it with another cron        -> APPLIED <cron>

and shuts DBOS down when stdin closes (``STOPPED``).
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any, Dict, List

from dbos import DBOS, DBOSConfig

SCHEDULE = "every-second"
CRON = "* * * * * *"
CONTEXT = {"greeting": "hello"}


def register(run_file: str, executor: str) -> None:
    @DBOS.workflow(name="record_run")
    def record_run(scheduled_time: datetime, context: Dict[str, Any]) -> None:
        with open(run_file, "a") as f:  # one short append per line: lines never interleave
            f.write(f"{scheduled_time.isoformat()} {executor} {DBOS.workflow_id} {context['greeting']}\n")

    def apply(cron: str) -> None:
        DBOS.apply_schedules([{"schedule_name": SCHEDULE, "workflow_fn": record_run,
                               "schedule": cron, "context": CONTEXT}])

    COMMANDS["apply"] = apply


COMMANDS: Dict[str, Any] = {}


def answer(command: List[str]) -> str:
    if command[0] == "pause":
        DBOS.pause_schedule(SCHEDULE)
        return "PAUSED"
    if command[0] == "resume":
        DBOS.resume_schedule(SCHEDULE)
        return "RESUMED"
    if command[0] == "trigger":
        return f"TRIGGERED {DBOS.trigger_schedule(SCHEDULE).workflow_id}"
    if command[0] == "status":
        schedule = DBOS.get_schedule(SCHEDULE)
        runs = DBOS.list_workflows(name="record_run", load_input=False, load_output=False)
        status, cron = (schedule["status"], schedule["schedule"]) if schedule else ("UNKNOWN", CRON)
        return f"STATUS {status} {cron.replace(' ', '_')} {len(runs)}"
    if command[0] == "apply":
        cron = " ".join(command[1:])
        COMMANDS["apply"](cron)
        return f"APPLIED {cron.replace(' ', '_')}"
    return f"UNKNOWN {command[0]}"


def main(argv: List[str]) -> None:
    sys_url, run_file, executor = argv
    register(run_file, executor)
    DBOS(config=DBOSConfig(name="schedule-app", system_database_url=sys_url, executor_id=executor,
                           application_version="schedule-app-v1"))
    DBOS.launch()
    COMMANDS["apply"](CRON)
    print("READY", flush=True)
    for line in sys.stdin:
        if line.split():
            print(answer(line.split()), flush=True)
    DBOS.destroy()
    print("STOPPED", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
