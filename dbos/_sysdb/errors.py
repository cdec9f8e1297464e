"""Driver errors, classified by code at the database boundary.

PostgreSQL says what went wrong with a SQLSTATE (``pgcode``); SQLite with a
result code (``sqlite_errorcode``, Python 3.11 and later). The storage layer
asks these functions, never the text of a message, except where the driver
gives no code at all (named at each such place).
"""

from __future__ import annotations

import sqlite3
from typing import Any, Optional

import peewee as pw

from ..error import DBOSSystemDatabaseError

# Peewee's own translation of driver errors into ``pw.DatabaseError`` and kin.
PEEWEE_ERRORS: Any = getattr(pw, "__exception_wrapper__")

UNIQUE = "unique"
FOREIGN_KEY = "foreign_key"

_PG_VIOLATIONS = {"23505": UNIQUE, "23503": FOREIGN_KEY}
# SQLITE_CONSTRAINT_PRIMARYKEY, _UNIQUE and _FOREIGNKEY (extended result codes).
_SQLITE_VIOLATIONS = {1555: UNIQUE, 2067: UNIQUE, 787: FOREIGN_KEY}
# Python 3.10's sqlite3 has no result codes: there the message is all there is.
_SQLITE_VIOLATION_TEXT = {"UNIQUE constraint failed": UNIQUE, "FOREIGN KEY constraint failed": FOREIGN_KEY}
# SQLITE_BUSY and SQLITE_LOCKED, the primary result codes of lock contention.
_SQLITE_BUSY = frozenset({5, 6})


def driver_error(exc: BaseException) -> BaseException:
    """The driver's own exception behind a Peewee or DBOS wrapper; ``exc`` if none."""
    if isinstance(exc, DBOSSystemDatabaseError) and exc.__cause__ is not None:
        exc = exc.__cause__
    if not isinstance(exc, pw.PeeweeException):
        return exc
    if exc.args and isinstance(exc.args[0], BaseException):
        return exc.args[0]
    # Peewee's own complaint (e.g. rollback on a closed connection) hides the cause.
    return exc.__context__ or exc


def sqlstate(exc: BaseException) -> Optional[str]:
    """PostgreSQL's SQLSTATE of the error, if it has one."""
    state = getattr(driver_error(exc), "pgcode", None)
    return state if isinstance(state, str) else None


def violation(exc: BaseException) -> Optional[str]:
    """``UNIQUE`` or ``FOREIGN_KEY`` when a statement broke that kind of constraint."""
    inner = driver_error(exc)
    state = sqlstate(inner)
    if state is not None:
        return _PG_VIOLATIONS.get(state)
    if not isinstance(inner, sqlite3.IntegrityError):
        return None
    code = getattr(inner, "sqlite_errorcode", None)
    if isinstance(code, int):
        return _SQLITE_VIOLATIONS.get(code)
    return next((kind for text, kind in _SQLITE_VIOLATION_TEXT.items() if str(inner).startswith(text)), None)


def constraint_name(exc: BaseException) -> Optional[str]:
    """The constraint PostgreSQL names as broken (SQLite names none)."""
    diag = getattr(driver_error(exc), "diag", None)
    name = getattr(diag, "constraint_name", None)
    return name if isinstance(name, str) else None


def sqlite_busy(exc: BaseException) -> bool:
    """SQLite lock contention: another connection holds the lock."""
    inner = driver_error(exc)
    if not isinstance(inner, sqlite3.OperationalError):
        return False
    code = getattr(inner, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _SQLITE_BUSY  # extended codes keep the primary in the low byte
    text = str(inner).lower()  # Python 3.10: no result codes
    return "locked" in text or "busy" in text


def postgres_disconnect(exc: BaseException) -> bool:
    """The PostgreSQL connection is gone: connection exceptions (08), the
    server shutting down (57P), or a lost connection reported without a code."""
    import psycopg2

    inner = driver_error(exc)
    if not isinstance(inner, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        return False
    code = sqlstate(inner)
    return code is None or code.startswith("08") or code.startswith("57P")


# SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN and SQLITE_AUTH (primary result codes).
_SQLITE_REFUSED = frozenset({3, 8, 14, 23})


def permission_denied(exc: BaseException) -> bool:
    """The database refused for want of privilege: PostgreSQL's
    insufficient_privilege (42501), a SQLite file or folder this process may
    not write, or the operating system saying so."""
    inner = driver_error(exc)
    if isinstance(inner, PermissionError):
        return True
    if sqlstate(inner) == "42501":
        return True
    if not isinstance(inner, sqlite3.OperationalError):
        return False
    code = getattr(inner, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _SQLITE_REFUSED
    text = str(inner).lower()  # Python 3.10: no result codes
    return "readonly" in text or "unable to open" in text
