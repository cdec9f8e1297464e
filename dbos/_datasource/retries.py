"""Which failures of a transaction are worth another attempt.

Lock contention, serialization failures and deadlocks lost a race with
another transaction; a lost connection went away under us. Running the whole
transaction again is the cure for each. Every adapter shares this test: it
looks through the wrappers ORMs put around driver errors.
"""

from __future__ import annotations

from typing import List, Optional

import peewee as pw

from .._sysdb.errors import sqlite_busy

# Serialization failure and deadlock: the transaction lost a race with another
# one, and running it again is the documented cure.
_CONFLICT_STATES = frozenset({"40001", "40P01"})
# The server went away under us (restart, failover, terminated backend).
# Another attempt is safe even if a COMMIT's answer was lost: the retry first
# looks for the output that commit would have recorded.
_LOST_CONNECTION_STATES = frozenset({"57P01", "57P02", "57P03"})
_LOST_CONNECTION_TEXT = (
    "server closed the connection unexpectedly",
    "terminating connection",
    "connection already closed",
    "ssl connection has been closed unexpectedly",
)


def is_retryable_error(exc: BaseException) -> bool:
    """True for lock contention, serialization failures and lost connections.

    Looks through the wrappers ORMs put around driver errors (Peewee keeps
    the original in ``args[0]``, SQLAlchemy in ``orig``, Django in
    ``__cause__``), so every adapter can share this.
    """
    return any(_retryable_alone(error) for error in _error_chain(exc))


def _error_chain(exc: BaseException) -> List[BaseException]:
    chain: List[BaseException] = []
    current: Optional[BaseException] = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = _wrapped(current)
    return chain


def _wrapped(exc: BaseException) -> Optional[BaseException]:
    if isinstance(exc, pw.PeeweeException) and exc.args and isinstance(exc.args[0], BaseException):
        return exc.args[0]
    original = getattr(exc, "orig", None)
    if isinstance(original, BaseException):
        return original
    return exc.__cause__


def _retryable_alone(exc: BaseException) -> bool:
    if sqlite_busy(exc):
        return True
    # psycopg2 names the SQLSTATE pgcode, psycopg 3 names it sqlstate.
    state = getattr(exc, "pgcode", None) or getattr(exc, "sqlstate", None)
    if isinstance(state, str):
        return state in _CONFLICT_STATES or state in _LOST_CONNECTION_STATES or state.startswith("08")
    return _psycopg_lost_connection(exc)


def _psycopg_lost_connection(exc: BaseException) -> bool:
    # A dropped connection often reaches the client with no SQLSTATE at all.
    if type(exc).__module__.split(".")[0] not in ("psycopg2", "psycopg"):
        return False
    text = str(exc).lower()
    return any(phrase in text for phrase in _LOST_CONNECTION_TEXT)
