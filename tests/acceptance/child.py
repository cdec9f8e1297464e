"""A test's app script run as a real process, and a fixture's way of starting them.

A child takes commands on stdin (closing it asks the app to shut down),
answers in lines on stdout, and logs to a file whose tail goes into every
assertion message about it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, List

WAIT_S = 30.0  # an upper bound reached only when a test is already failing


class Child:
    """``python SCRIPT ARGS...``: stdout read line by line, stderr to ``<name>.log``."""

    def __init__(self, script: str, log_dir: Path, name: str, *args: str) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen([sys.executable, script, *args], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err, text=True)

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text().splitlines()[-30:])

    def expect(self, prefix: str) -> str:
        """The first line starting with ``prefix`` (blocks on the child's output)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(prefix):
                return line.strip()
        self.proc.wait(timeout=WAIT_S)
        raise AssertionError(f"{self.name} ended ({self.proc.returncode}) without printing "
                             f"{prefix!r}:\n{self.log_tail()}")

    def ask(self, command: str, prefix: str) -> str:
        """Send one command line; the answer starting with ``prefix``."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.expect(prefix)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """Close stdin: the app shuts DBOS down, prints STOPPED and exits 0."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.expect("STOPPED")
        assert self.proc.wait(timeout=WAIT_S) == 0, self.log_tail()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=WAIT_S)
        assert self.proc.returncode == -signal.SIGKILL

    def reap(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)  # in case a test stopped it and then failed
            self.proc.kill()
        self.proc.wait(timeout=WAIT_S)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None and not stream.closed:
                stream.close()


@contextmanager
def children_of(script: str, log_dir: Path) -> Iterator[Callable[..., Child]]:
    """``start(name, *args)`` runs the script as a new child; all are reaped at the end."""
    started: List[Child] = []

    def start(name: str, *args: str) -> Child:
        started.append(Child(script, log_dir, name, *args))
        return started[-1]

    try:
        yield start
    finally:
        for child in started:
            child.reap()
