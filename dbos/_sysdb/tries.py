"""How many tries this context has repeated after an outage, and whether the
unit of work at hand is such a repeat.

A write whose COMMIT went through but whose answer a lost connection hid is
tried again and finds its own row; these counts tell it that this can be its
own earlier try (``retried_since``), not another execution's.
"""

from __future__ import annotations

from contextvars import ContextVar, Token

_retries: ContextVar[int] = ContextVar("dbos_sysdb_retries", default=0)
_repeating: ContextVar[bool] = ContextVar("dbos_sysdb_repeating", default=False)


def retried_since(count: int) -> bool:
    """Whether work begun when ``retries()`` was ``count`` may have been
    applied already: the unit of work at hand, or a statement since, was
    tried again after losing its connection."""
    return _repeating.get() or _retries.get() != count


def repeating() -> bool:
    """Whether the unit of work at hand is a try repeated after an outage."""
    return _repeating.get()


def retries() -> int:
    """This context's count of tries repeated after an outage."""
    return _retries.get()


def count_retry() -> None:
    """Count one more try repeated after an outage, in this context."""
    _retries.set(_retries.get() + 1)


def begin_try(again: bool) -> Token[bool]:
    """Mark the unit of work at hand a repeat if ``again`` (or if it already
    was) until ``end_try``; a pair of calls, not a context manager, since
    every statement on SQLite goes through here."""
    return _repeating.set(again or _repeating.get())


def end_try(token: Token[bool]) -> None:
    _repeating.reset(token)
