"""SIGTERM ends a DBOS process gracefully: stop taking work, let the running
workflows finish for a while, then end the way SIGTERM ends a process.

Supervisors (Kubernetes, systemd, Docker, process managers) stop a process
with SIGTERM and, after a grace period, SIGKILL. Left to Python's default,
SIGTERM kills at once: workflows stop between two steps, which recovery
handles, but work that was nearly done is redone elsewhere. So at launch,
when the application has not taken SIGTERM itself, DBOS installs a handler:

- Only on the main thread (Python allows no other) and only over the default
  disposition. A handler already there (gunicorn's and uvicorn's workers,
  Django's ``dbos_worker``, ``asyncio``'s ``add_signal_handler``, the
  application's own) or SIGTERM ignored: DBOS leaves it alone. A server that
  installs its handler after launch replaces ours and stays in charge; one
  that restores the previous handler and raises the signal again when it has
  stopped (uvicorn) hands the signal to us, and DBOS then stops too.
- The handler itself only starts a thread: the main thread may be inside a
  workflow, holding locks, or serving requests, and it carries on. The
  thread calls ``shutdown`` (``DBOS.destroy`` with the configured timeout),
  then ends the process with SIGTERM under the default disposition, so its
  exit status is what a supervisor expects. Workflows still running then stay
  PENDING and are recovered by the next launch of this executor, or taken over.
- A second SIGTERM while waiting ends the process at once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Callable, Optional

logger = logging.getLogger("dbos")

# After the shutdown, how long the main thread has to end the process before
# the shutdown thread ends it itself (a main thread stuck in C code runs no handler).
EXIT_GRACE_SEC = 5.0
EXIT_STATUS = 128 + signal.SIGTERM


class _StopOnSigterm:
    """The installed handler: one per process at a time."""

    def __init__(self, shutdown: Callable[[], None]) -> None:
        self.shutdown = shutdown
        self.draining = False
        self.done = False

    def on_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.done or self.draining:  # shut down, or told twice: end now
            _die_now()
        self.draining = True
        logger.info("SIGTERM received: DBOS is shutting down")
        # Not a daemon: if the main thread ends meanwhile, the interpreter waits for the shutdown.
        threading.Thread(target=self._drain, name="dbos-sigterm", daemon=False).start()

    def _drain(self) -> None:
        try:
            self.shutdown()
        except Exception:
            logger.error("Graceful shutdown on SIGTERM failed", exc_info=True)
        self.done = True
        _flush()
        os.kill(os.getpid(), signal.SIGTERM)  # handled on the main thread: on_signal ends the process
        threading.Event().wait(EXIT_GRACE_SEC)
        os._exit(EXIT_STATUS)


_installed: Optional[_StopOnSigterm] = None


def install(shutdown: Callable[[], None]) -> bool:
    """Handle SIGTERM with ``shutdown`` then exit, unless someone else handles it
    or this is not the main thread; whether it was installed."""
    global _installed
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False
    handler = _StopOnSigterm(shutdown)
    signal.signal(signal.SIGTERM, handler.on_signal)
    _installed = handler
    return True


def uninstall() -> None:
    """Give SIGTERM back its default, if our handler is still the one installed and
    this thread may change it (during a shutdown on SIGTERM it may not: it stays)."""
    global _installed
    handler = _installed
    if handler is None or handler.draining:
        return
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) == handler.on_signal:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _installed = None


def _die_now() -> None:
    _flush()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.raise_signal(signal.SIGTERM)


def _flush() -> None:
    """What the process printed or logged reaches its pipes before it ends."""
    for handler in logging.getLogger("dbos").handlers + logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
