"""The isolation levels a transaction may ask for."""

from __future__ import annotations

from typing import Literal, Tuple, get_args

from ..error import DBOSInvalidArgumentError

IsolationLevel = Literal["SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED"]
ISOLATION_LEVELS: Tuple[str, ...] = get_args(IsolationLevel)


def check_level(isolation_level: object) -> None:
    """Refuse a level no backend here has (SQLite runs every one as SERIALIZABLE)."""
    if isolation_level not in ISOLATION_LEVELS:
        raise DBOSInvalidArgumentError(
            "isolation_level", isolation_level, f"use one of {', '.join(ISOLATION_LEVELS)}"
        )
