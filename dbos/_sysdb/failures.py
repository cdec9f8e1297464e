"""What a system-database failure says to the user: which database, which
operation, the cause in words, and what to do about it.

``errors.failure_kind`` tells the cause from the SQLSTATE or SQLite result
code; this module only words it. The driver's own message is quoted as the
detail, never read.
"""

from __future__ import annotations

import re
from typing import Dict, NamedTuple, Optional, Type

from ..error import (
    DBOSDatabaseAuthenticationError,
    DBOSDatabaseBusyError,
    DBOSDatabaseConnectionError,
    DBOSDatabasePermissionError,
    DBOSDiskFullError,
    DBOSReadOnlyDatabaseError,
    DBOSSystemDatabaseError,
    DBOSTooManyConnectionsError,
)
from . import errors as kinds
from .errors import driver_error, failure_kind
from .url import DatabaseURL


class Wording(NamedTuple):
    error: Type[DBOSSystemDatabaseError]
    cause: str
    remedy: str


_CONNECT_REMEDY = ("Check that the database server is running and reachable, and that the URL's host, port, "
                   "database, user and password are right.")
# A file has no server, host or password to check.
_SQLITE_REMEDIES = {_CONNECT_REMEDY: "Check that the file's folder exists and that this process may open the file."}

_WORDINGS: Dict[str, Wording] = {
    kinds.DISK_FULL: Wording(
        DBOSDiskFullError, "disk full: the database has no room left to write",
        "Free space on the disk that holds the database (or raise its size limit); work already under way "
        "waits and resumes by itself once writes succeed again."),
    kinds.READ_ONLY: Wording(
        DBOSReadOnlyDatabaseError, "the database is read-only",
        "Point the URL at a database this process may write: a writable file, or the primary server, "
        "not a standby."),
    kinds.TOO_MANY_CONNECTIONS: Wording(
        DBOSTooManyConnectionsError, "the server has no connection slots left",
        "Raise the server's max_connections, lower sys_db_pool_size, or run fewer processes at once."),
    kinds.POOL_EXHAUSTED: Wording(
        DBOSTooManyConnectionsError, "no free connection: every pooled connection stayed in use",
        "Raise sys_db_pool_size or use fewer threads at once."),
    kinds.AUTHENTICATION: Wording(
        DBOSDatabaseAuthenticationError, "the server refused the user or password",
        "Check the user and password in the URL, and that the server lets that user connect."),
    kinds.CANNOT_CONNECT: Wording(
        DBOSDatabaseConnectionError, "no connection could be opened",
        _CONNECT_REMEDY),
    kinds.CONNECTION_LOST: Wording(
        DBOSDatabaseConnectionError, "the connection was lost",
        _CONNECT_REMEDY),
    kinds.LOCK_TIMEOUT: Wording(
        DBOSDatabaseBusyError, "another connection held a lock past the time limit",
        "Look for a long transaction or another process holding the database, then try again."),
    kinds.PERMISSION: Wording(
        DBOSDatabasePermissionError, "permission denied",
        "Grant the database role (or the operating-system user, for a SQLite file) what it needs, "
        "or use one that has it."),
    kinds.DISK_ERROR: Wording(
        DBOSSystemDatabaseError, "the disk failed a read or write",
        "Check the disk that holds the database: its free space and its health."),
    kinds.NOT_A_DATABASE: Wording(
        DBOSSystemDatabaseError, "the file is not a database, or is damaged",
        "Point the URL at the system database file, or restore it from a backup."),
}

# The first table a statement names, after FROM, INTO or UPDATE (schema-qualified or not).
_TABLE = re.compile(r'\b(?:FROM|INTO|UPDATE)\s+(?:"?\w+"?\.)?"?(\w+)"?', re.IGNORECASE)
_ALONE = {"COMMIT": "committing a transaction", "BEGIN": "beginning a transaction"}
_VERBS = {"SELECT": "reading", "INSERT": "writing", "UPDATE": "updating", "DELETE": "deleting from"}


def operation_of(sql: Optional[str]) -> str:
    """Words for what a statement of ours was doing: "writing workflow_status".

    Read from our own SQL (its verb and first table), never from the driver."""
    if not sql or not sql.split():
        return "running a statement"
    verb = sql.split(None, 1)[0].upper()
    if verb in _ALONE:
        return _ALONE[verb]
    table = _TABLE.search(sql)
    if verb not in _VERBS or table is None:
        return f"running {verb}"
    return f"{_VERBS[verb]} {table.group(1)}"


def describe_failure(url: DatabaseURL, operation: str, exc: BaseException) -> DBOSSystemDatabaseError:
    """The DBOS exception for ``exc``, raised by the system database at ``url``
    during ``operation`` (words such as "writing operation_outputs" or
    "connecting"); the caller chains ``exc`` as its cause."""
    inner = driver_error(exc)
    detail = " ".join(str(inner).split()).rstrip(".?!") or type(inner).__name__
    wording = _WORDINGS.get(failure_kind(exc))
    where = f"The system database at {url} failed while {operation}"
    if wording is None:
        return DBOSSystemDatabaseError(f"{where}: {detail}")
    remedy = _SQLITE_REMEDIES.get(wording.remedy, wording.remedy) if url.is_sqlite else wording.remedy
    return wording.error(f"{where}: {wording.cause} ({detail}). {remedy}")
