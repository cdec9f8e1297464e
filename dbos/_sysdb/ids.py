"""The rule every workflow ID given by a user must follow, on both backends.

PostgreSQL refuses a NUL character in text (psycopg2 raises a bare
``ValueError`` before sending) and a B-tree index entry over about 2.7 kB;
SQLite takes both. One check at each place an ID comes in makes the two
backends refuse the same IDs, with the same error, before anything is
written. The limit is in UTF-8 bytes, what the index stores, and leaves room
for the suffix of a child's ID (``<parent>-<step>``) and for a second key
column beside it in a composite index.
"""

from __future__ import annotations

from typing import Iterable, List, Optional, TypeVar

from ..error import DBOSInvalidArgumentError

MAX_ID_BYTES = 1024

T = TypeVar("T", str, Optional[str])


def check_workflow_id(value: T, argument: str = "workflow_id") -> T:
    """``value`` if it is a usable workflow ID (None passes); else ``DBOSInvalidArgumentError``."""
    if value is None:
        return value
    if not isinstance(value, str):
        raise DBOSInvalidArgumentError(argument, value, "a workflow ID must be a string")
    if "\x00" in value:
        raise DBOSInvalidArgumentError(argument, _shown(value), "a workflow ID must not contain a NUL character")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise DBOSInvalidArgumentError(
            argument, _shown(value), "a workflow ID must be valid Unicode text (no lone surrogates)"
        ) from None
    if size > MAX_ID_BYTES:
        raise DBOSInvalidArgumentError(argument, _shown(value), (
            f"a workflow ID must be at most {MAX_ID_BYTES} bytes in UTF-8, this one is {size}"
        ))
    return value


def check_workflow_ids(values: Iterable[str], argument: str = "workflow_ids") -> List[str]:
    """Every ID of ``values`` checked, as a list."""
    return [check_workflow_id(v, argument) for v in values]


def _shown(value: str) -> str:
    """The value as an error shows it: a megabyte of ID is no help in a message."""
    return value if len(value) <= 80 else f"{value[:40]}...({len(value)} characters)"
