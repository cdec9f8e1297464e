"""``manage.py dbos_worker``: a process that runs workflows and nothing else.

It launches DBOS (recovering this executor's pending workflows, then
serving the queues and schedules) and stays up until SIGTERM or SIGINT,
when it stops taking work, gives running workflows a moment to finish and
exits. Whatever it leaves unfinished is recovered at the next launch.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any, List, Optional

from django.core.management.base import BaseCommand, CommandParser

from dbos._facade.dbos import DBOS
from dbos.contrib.django.launching import launch

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no type hints
    help = (
        "Launch DBOS and run workflows: recover this executor's pending ones, then serve "
        "the queues and schedules until SIGTERM or SIGINT."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "-q", "--queue", action="append", dest="queues", metavar="NAME",
            help="serve only this queue (repeat for several; default: every queue)",
        )
        parser.add_argument(
            "--shutdown-timeout", type=int, default=10, metavar="SECONDS",
            help="on a stop signal, wait this long for running workflows (default: 10)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stop = _stop_on_signals()
        queues: Optional[List[str]] = options["queues"]
        launch(queues=queues)
        self._say(f"DBOS worker ready (pid {os.getpid()}); stop it with SIGTERM or Ctrl-C")
        stop.wait()
        self._say("DBOS worker stopping")
        DBOS.destroy(workflow_completion_timeout_sec=options["shutdown_timeout"])
        self._say("DBOS worker stopped")

    def _say(self, line: str) -> None:
        # Flushed: supervisors and scripts wait for these lines on a pipe.
        self.stdout.write(line)
        self.stdout.flush()


def _stop_on_signals() -> threading.Event:
    """An event set by SIGTERM/SIGINT, installed before launch so no signal is lost."""
    stop = threading.Event()

    def handler(signum: int, frame: Optional[FrameType]) -> None:
        stop.set()

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    return stop
