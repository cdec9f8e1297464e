"""Driver errors, classified by code at the database boundary.

PostgreSQL says what went wrong with a SQLSTATE (``pgcode``); SQLite with a
result code (``sqlite_errorcode``, Python 3.11 and later). The storage layer
asks these functions, never the text of a message, except where the driver
gives no code at all (named at each such place).
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional

import peewee as pw
from playhouse.pool import MaxConnectionsExceeded

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
SQLITE_READONLY = 8
SQLITE_FULL = 13


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


def is_driver_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the database driver (or Peewee's wrapping of it)."""
    if isinstance(exc, (pw.PeeweeException, MaxConnectionsExceeded, sqlite3.Error)):
        return True
    # psycopg (3) too: a caller's own connection (DBOSClient.*_in_transaction) may use it.
    return type(driver_error(exc)).__module__.split(".", 1)[0] in ("psycopg2", "psycopg")


def sqlstate(exc: BaseException) -> Optional[str]:
    """PostgreSQL's SQLSTATE of the error, if it has one."""
    inner = driver_error(exc)
    state = getattr(inner, "pgcode", None) or getattr(inner, "sqlstate", None)  # psycopg2, psycopg 3
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


def disk_full(exc: BaseException) -> bool:
    """The database could not write for want of space: SQLite's SQLITE_FULL
    or PostgreSQL's disk_full (53100)."""
    return failure_kind(exc) == DISK_FULL


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


# ----------------------------------------------------------------------
# What kind of failure: one name per cause a user can act on
# ----------------------------------------------------------------------

DISK_FULL = "disk full"
READ_ONLY = "read-only"
TOO_MANY_CONNECTIONS = "too many connections"
POOL_EXHAUSTED = "no free pooled connection"
AUTHENTICATION = "authentication"
CANNOT_CONNECT = "cannot connect"
CONNECTION_LOST = "connection lost"
LOCK_TIMEOUT = "lock timeout"
PERMISSION = "permission denied"
DISK_ERROR = "disk I/O error"
NOT_A_DATABASE = "not a database"
OTHER = "other"

_PG_KINDS: Dict[str, str] = {
    "53100": DISK_FULL,
    "25006": READ_ONLY,  # read_only_sql_transaction: a standby, or a read-only default
    "53300": TOO_MANY_CONNECTIONS,
    "28000": AUTHENTICATION,
    "28P01": AUTHENTICATION,
    "08001": CANNOT_CONNECT,  # the client could not establish the connection
    "08004": CANNOT_CONNECT,  # the server rejected it
    "55P03": LOCK_TIMEOUT,  # lock_not_available (lock_timeout, NOWAIT)
    "42501": PERMISSION,
    "57P01": CONNECTION_LOST,
    "57P02": CONNECTION_LOST,
    "57P03": CANNOT_CONNECT,  # cannot_connect_now: starting up
}
# By SQLSTATE class, for the codes not named above.
_PG_CLASSES: Dict[str, str] = {"08": CONNECTION_LOST, "28": AUTHENTICATION}

# SQLite result codes, extended first (they keep the primary code in the low byte).
_SQLITE_EXTENDED: Dict[int, str] = {
    4874: DISK_FULL,  # SQLITE_IOERR_SHMSIZE: the -shm file could not grow, as on a full disk
}
_SQLITE_PRIMARY: Dict[int, str] = {
    SQLITE_FULL: DISK_FULL,
    SQLITE_READONLY: READ_ONLY,
    5: LOCK_TIMEOUT,  # SQLITE_BUSY: still locked after the busy timeout
    6: LOCK_TIMEOUT,  # SQLITE_LOCKED
    14: CANNOT_CONNECT,  # SQLITE_CANTOPEN: the file or its folder cannot be opened
    3: PERMISSION,  # SQLITE_PERM
    23: PERMISSION,  # SQLITE_AUTH
    10: DISK_ERROR,  # SQLITE_IOERR
    11: NOT_A_DATABASE,  # SQLITE_CORRUPT
    26: NOT_A_DATABASE,  # SQLITE_NOTADB
}

# Set on an error raised while opening a connection (see ``connecting``).
_AT_CONNECT = "_dbos_at_connect"


@contextmanager
def connecting() -> Iterator[None]:
    """Marks an error raised in the block as a failure to connect.

    psycopg2 reports a connection it could not open (refused, unknown host,
    wrong password, unknown role) with no SQLSTATE; where the error was raised
    is then what tells it apart, not the words of its message."""
    try:
        yield
    except Exception as exc:
        for error in (exc, driver_error(exc)):
            try:
                setattr(error, _AT_CONNECT, True)
            except AttributeError:  # an exception type with __slots__
                pass
        raise


def at_connect(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while opening a connection (``connecting``)."""
    return any(getattr(error, _AT_CONNECT, False) for error in (exc, driver_error(exc)))


def failure_kind(exc: BaseException) -> str:
    """Which failure ``exc`` is, by SQLSTATE or SQLite result code, else by
    where it was raised; one of the names above (``OTHER`` when none fits)."""
    inner = driver_error(exc)
    if isinstance(exc, MaxConnectionsExceeded) or isinstance(inner, MaxConnectionsExceeded):
        return POOL_EXHAUSTED
    state = sqlstate(inner)
    if state is not None:
        return _PG_KINDS.get(state) or _PG_CLASSES.get(state[:2]) or OTHER
    code = _sqlite_extended_code(inner)
    if code is not None:
        return _SQLITE_EXTENDED.get(code) or _SQLITE_PRIMARY.get(code & 0xFF, OTHER)
    if at_connect(exc):
        return CANNOT_CONNECT
    if postgres_disconnect(inner):
        return CONNECTION_LOST
    return _uncoded_sqlite_kind(inner)


def _sqlite_extended_code(inner: BaseException) -> Optional[int]:
    code = getattr(inner, "sqlite_errorcode", None) if isinstance(inner, sqlite3.Error) else None
    return code if isinstance(code, int) else None


def _uncoded_sqlite_kind(inner: BaseException) -> str:
    """Python 3.10's sqlite3 gives no result codes: its messages are all there is."""
    if not isinstance(inner, sqlite3.Error):
        return PERMISSION if isinstance(inner, PermissionError) else OTHER
    text = str(inner).lower()
    if "disk is full" in text:
        return DISK_FULL
    if sqlite_busy(inner):
        return LOCK_TIMEOUT
    return PERMISSION if permission_denied(inner) else OTHER
