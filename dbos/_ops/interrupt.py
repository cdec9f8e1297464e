"""Ctrl-C ends a DBOS program with one line, not a traceback through DBOS.

A KeyboardInterrupt that nothing caught reaches ``sys.excepthook``, whose
default prints the whole stack: thirty lines through this library's
internals, which tell a user nothing. At launch, where that default is still
in place (an application, IPython or a framework with its own hook keeps
it), DBOS installs a hook that, for KeyboardInterrupt only, prints one line
and stops DBOS at once; every other exception is printed as before. What
was running stays PENDING, its finished steps checkpointed, and the next
launch resumes it. Nothing changes for code that catches KeyboardInterrupt
itself, and the process still ends as an interrupted one (status 130).
"""

from __future__ import annotations

import os
import signal
import sys
from types import TracebackType
from typing import Callable, Optional, Type

MESSAGE = ("Interrupted (Ctrl-C): DBOS stopped. Unfinished workflows stay PENDING "
           "and resume from their last completed step at the next launch.")

_installed: Optional[Callable[..., None]] = None


def install(stop: Callable[[], bool]) -> bool:
    """Handle an uncaught KeyboardInterrupt with one line and ``stop()``, unless
    someone replaced Python's default hook; whether it was installed.
    ``stop()`` says whether workflows were still running on DBOS's threads."""
    global _installed
    if sys.excepthook is not sys.__excepthook__:
        return _installed is not None and sys.excepthook is _installed

    def hook(kind: Type[BaseException], value: BaseException, tb: Optional[TracebackType]) -> None:
        if not issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, tb)
            return
        print(MESSAGE, file=sys.stderr, flush=True)
        try:
            still_running = stop()
        except BaseException:  # stopping is a courtesy: the process ends either way
            still_running = True
        if still_running:
            _end_now()

    sys.excepthook = _installed = hook
    return True


def _end_now() -> None:
    """End the process as SIGINT does, now: workflows still running on DBOS's
    threads would otherwise keep the interpreter waiting for them at exit
    (they stay PENDING, and the next launch resumes them)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)


def uninstall() -> None:
    """Give back Python's default hook, if ours is still the one installed."""
    global _installed
    if _installed is not None and sys.excepthook is _installed:
        sys.excepthook = sys.__excepthook__
    _installed = None
