"""``dbos start``: run the ``runtimeConfig.start`` commands of the configuration file.

Each command runs through ``/bin/sh``, in order, in a process group of its
own, so a signal reaches everything it started (the shell, the app, the
app's own children). A terminal's Ctrl-C reaches only ``dbos start``'s
group, and a supervisor's SIGTERM only ``dbos start``: both are passed on to
the command's group, and ``dbos start`` then waits for the command to end
and exits with its status, so whoever started it sees the app's own exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
from types import FrameType
from typing import Any, Dict, List, Optional, Sequence

FORWARDED = (signal.SIGINT, signal.SIGTERM)
# The shell gets the signal with its group. Left to the default, it would die
# at once (and `dbos start` with it) while the app is still shutting down;
# trapped, it waits for the app, then exits with the app's status instead
# of going on to the command's next part. Its children get the default.
SHELL_PRELUDE = "trap exit INT TERM\n"


def start_commands(data: Dict[str, Any]) -> List[str]:
    """The configuration's start commands (validated as strings by its schema)."""
    return list(data.get("runtimeConfig", {}).get("start", []))


def run_start_commands(commands: Sequence[str]) -> int:
    """Run each command in order; stop at the first that fails, with its status."""
    for command in commands:
        print(f"Executing: {command}", flush=True)
        status = run_in_own_group(command)
        if status != 0:
            return status
    return 0


def run_in_own_group(command: str) -> int:
    """Run ``command`` through the shell as the leader of a new process group,
    passing SIGINT and SIGTERM on to that group; its exit status."""
    group: List[int] = []
    pending: List[int] = []

    def forward(signum: int, frame: Optional[FrameType]) -> None:
        if not group:
            pending.append(signum)  # arrived before the command started
            return
        try:
            os.killpg(group[0], signum)
        except ProcessLookupError:
            pass  # the group is gone already; wait() is about to return

    # Handlers before the start: the command then gets the default action
    # for both signals, even where ours were ignored (a shell's background job).
    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        process = subprocess.Popen(["/bin/sh", "-c", SHELL_PRELUDE + command], start_new_session=True)
        group.append(process.pid)
        for signum in pending:
            forward(signum, None)
        return exit_status(process.wait())
    finally:
        restore(previous)


def restore(previous: Dict[signal.Signals, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def exit_status(returncode: int) -> int:
    # A command ended by a signal exits as a shell reports it: 128 + its number.
    return 128 - returncode if returncode < 0 else returncode
