"""A worker that the takeover acceptance test runs as several processes.

    python takeover_app.py SYS_URL LEDGER_DIR EXECUTOR_ID HANG(0|1) TIMEOUT_SEC [CONCURRENCY]

Every worker has its own executor ID and the same application version, so a
silent one's work is taken over by the others after TIMEOUT_SEC. After
launch it prints READY and takes commands on stdin:

* ``enqueue N``: put jobs ``job-0``.. ``job-{N-1}`` on the shared queue
  (global concurrency CONCURRENCY, by default ``CONCURRENCY``);
* ``direct N``: start workflows ``direct-0``.. in the background, not queued.

Each workflow body logs ``body``, then runs three steps, each logging its
name when it runs: ``enter`` (for a queued job: joins the running set kept
under a lock for all processes, raising the peak), ``hold`` (with HANG=1
prints ``HANGING <id>`` and hangs, for the test to kill the process) and
``finish`` (leaves the running set). Log lines go to ``LEDGER_DIR/events.log``
as ``<what> <workflow ID> <executor>``, one ``write`` each on an append-only
file, so lines from several processes never interleave.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List

from dbos import DBOS, DBOSConfig, Queue, SetWorkflowID

QUEUE = "takeover-jobs"
CONCURRENCY = 2
APP_VERSION = "takeover-v1"


class Ledger:
    """What ran where, and how many queued jobs were running at once."""

    def __init__(self, directory: str, executor: str) -> None:
        self.dir = Path(directory)
        self.executor = executor

    def log(self, what: str, workflow_id: str) -> None:
        fd = os.open(self.dir / "events.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{what} {workflow_id} {self.executor}\n".encode())
        finally:
            os.close(fd)

    def join(self, workflow_id: str) -> None:
        self._update(lambda running: running + [[workflow_id, os.getpid()]])

    def leave(self, workflow_id: str) -> None:
        self._update(lambda running: [r for r in running if r[0] != workflow_id])

    def _update(self, change: Any) -> None:
        """Change the running set under a lock every process takes; entries of
        dead processes (the killed worker's) no longer count."""
        with open(self.dir / "running.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self._read()
            running = [r for r in change(state["running"]) if _alive(int(r[1]))]
            state = {"running": running, "peak": max(state["peak"], len(running))}
            (self.dir / "running.json").write_text(json.dumps(state))

    def _read(self) -> Dict[str, Any]:
        path = self.dir / "running.json"
        return json.loads(path.read_text()) if path.exists() else {"running": [], "peak": 0}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


_say_lock = threading.Lock()


def say(line: str) -> None:
    """One whole line on stdout. ``print`` writes the text and the newline
    apart, so two jobs reaching ``hold`` at once could make one line of two
    ("HANGING job-0HANGING job-1"), and the test would wait for the second."""
    with _say_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def register(ledger: Ledger, hang: bool) -> Any:
    @DBOS.step(name="enter")
    def enter(workflow_id: str) -> None:
        ledger.log("enter", workflow_id)
        if workflow_id.startswith("job-"):
            ledger.join(workflow_id)

    @DBOS.step(name="hold")
    def hold(workflow_id: str) -> None:
        ledger.log("hold", workflow_id)
        if hang:
            say(f"HANGING {workflow_id}")
            threading.Event().wait()  # until killed

    @DBOS.step(name="finish")
    def finish(workflow_id: str) -> None:
        ledger.log("finish", workflow_id)
        if workflow_id.startswith("job-"):
            ledger.leave(workflow_id)

    @DBOS.workflow(name="takeover_work")
    def work(label: str) -> str:
        workflow_id = DBOS.workflow_id or label
        ledger.log("body", workflow_id)
        enter(workflow_id)
        hold(workflow_id)
        finish(workflow_id)
        return label.upper()

    return work


def serve(work: Any, queue: Queue) -> None:
    say("READY")
    for line in sys.stdin:
        command, count = line.split()
        for i in range(int(count)):
            if command == "enqueue":
                with SetWorkflowID(f"job-{i}"):
                    queue.enqueue(work, f"job-{i}")
            else:
                with SetWorkflowID(f"direct-{i}"):
                    DBOS.start_workflow(work, f"direct-{i}")
        say(f"DONE {command}")
    DBOS.destroy()
    say("STOPPED")


def main(argv: List[str]) -> None:
    sys_url, ledger_dir, executor, hang, timeout = argv[:5]
    work = register(Ledger(ledger_dir, executor), hang == "1")
    concurrency = int(argv[5]) if len(argv) > 5 else CONCURRENCY
    queue = Queue(QUEUE, concurrency=concurrency, polling_interval_sec=0.1)
    DBOS(config=DBOSConfig(name="takeover-app", system_database_url=sys_url, application_version=APP_VERSION,
                           executor_id=executor, executor_timeout_sec=float(timeout)))
    DBOS.launch()
    serve(work, queue)


if __name__ == "__main__":
    main(sys.argv[1:])
