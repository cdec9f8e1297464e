"""Database outages are pauses: which errors are an outage, how long to wait
between tries, and the one warning and one recovery line an outage logs.

An outage is an error that says the database is away for now, not that the
request was wrong: on PostgreSQL a connection exception (SQLSTATE class 08),
the server shutting down or starting up (57P01, 57P02, 57P03), or a lost
connection reported without a code; on SQLite a file still locked after the
busy timeout (SQLITE_BUSY, SQLITE_LOCKED); on both a full disk (SQLITE_FULL,
PostgreSQL's 53100), which frees when someone makes room. Lock
time-outs (55P03), serialization failures and deadlocks are not: they are
answers of a working server, and the layers above decide about them.

``Connection`` retries a unit of work or a statement hit by an outage with
capped exponential backoff and jitter until the database is back; work
already running (checkpoints, a workflow's outcome, queue claims, waits,
schedules, recovery) never sees the outage. Two exceptions give up with a
``DBOSSystemDatabaseError`` naming the cause:

- A database this ``Connection`` has never reached: a wrong URL or a server
  not running at launch fails at once, as before.
- New work: what runs inside ``new_work()`` (a context variable, so it
  follows a call into ``asyncio.to_thread``) gives up once the outage has
  lasted ``NEW_WORK_LIMIT_SEC``, and on a full disk at once (see
  ``Connection._give_up_on_new_work``). The engine wraps a top-level workflow start
  and an enqueue from outside a workflow in it; a ``Connection`` made with
  ``bounded=True`` (a ``DBOSClient``'s) treats every call as new work.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator, Optional

from .errors import disk_full, driver_error, postgres_disconnect, sqlite_busy, sqlstate

logger = logging.getLogger("dbos")

# How long a call that starts new work waits for the database to come back.
NEW_WORK_LIMIT_SEC = 60.0
# The first pause after a failure, and the longest one.
BACKOFF_START_SEC = 0.2
BACKOFF_CAP_SEC = 10.0

# Shutting down (57P01 admin, 57P02 crash) and starting up (57P03 cannot connect now).
_PG_SHUTDOWN = frozenset({"57P01", "57P02", "57P03"})

_new_work: ContextVar[bool] = ContextVar("dbos_new_work", default=False)


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the system database is away for now (see the module docstring)."""
    inner = driver_error(exc)
    if sqlite_busy(inner) or disk_full(inner):
        return True
    if not postgres_disconnect(inner):
        return False
    code = sqlstate(inner)
    return code is None or code.startswith("08") or code in _PG_SHUTDOWN


@contextmanager
def new_work(when: bool = True) -> Iterator[None]:
    """Within the block (if ``when``), system-database calls start new work:
    during an outage they give up after ``NEW_WORK_LIMIT_SEC`` instead of
    waiting on."""
    token = _new_work.set(when or _new_work.get())
    try:
        yield
    finally:
        _new_work.reset(token)


def starting_new_work() -> bool:
    """Whether the caller is inside ``new_work()``."""
    return _new_work.get()


class Backoff:
    """Capped exponential pauses with full jitter: each pause is drawn from
    [half, all] of a bound that doubles from ``BACKOFF_START_SEC`` to ``cap``."""

    def __init__(self, cap: float = BACKOFF_CAP_SEC, generation: int = 0) -> None:
        self._bound = BACKOFF_START_SEC
        self._cap = cap
        self.started = time.monotonic()
        self.generation = generation  # the owner's count of closings when the first try failed
        self.tries = 0  # pauses handed out so far

    def next(self) -> float:
        """The next pause, in seconds."""
        self.tries += 1
        bound = self._bound
        self._bound = min(self._bound * 2, self._cap)
        return random.uniform(bound / 2, bound)

    def elapsed(self) -> float:
        return time.monotonic() - self.started


class OutageTracker:
    """One per system database: one warning when an outage starts, one info
    line when the database answers again; nothing in between.

    A connection lost once, whose first retry goes through (a server that
    closed an idle connection, a pooled connection left over from an outage
    already over), is no outage: it is logged at debug level only. The
    warning comes when an operation fails again after its first pause."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._lock = threading.Lock()
        self._since: Optional[float] = None
        # A full disk still answers reads: only a write that failed and then
        # went through says the outage is over.
        self._disk_full = False

    @property
    def active(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException, again: bool) -> None:
        """An operation met an outage (``again``: not for the first time);
        the first repeated failure since the last success warns."""
        if not again:
            logger.debug(f"Lost a connection to the system database at {self._where}; retrying: {exc}")
            return
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
            self._disk_full = disk_full(exc)
        cause = " ".join(str(driver_error(exc)).split()) or type(driver_error(exc)).__name__
        logger.warning(f"The system database at {self._where} is unavailable ({cause}); "
                       "pausing database work until it is back")

    def succeeded(self, retried: bool = True) -> None:
        """An operation went through (``retried``: after failing); ends the
        outage, if there was one, unless the disk is full and this was not a
        retry (a read, which a full disk still serves)."""
        if self._since is None:  # the common case, without the lock
            return
        with self._lock:
            if self._disk_full and not retried:
                return
            since, self._since = self._since, None
        if since is not None:
            logger.info(f"The system database at {self._where} is back after {time.monotonic() - since:.1f} s")
