"""PostgreSQL connections that prepare the statements they keep running.

psycopg2 sends every statement as text, so the server parses and plans each
checkpoint, start and finish anew: a tenth of a millisecond or more per
statement, a third of what the commit itself costs. The stores mark their
hot statements with ``preparable``; a connection prepares such a statement
the first time it runs it (``PREPARE``) and from then on sends only
``EXECUTE`` with the values. Callers, Peewee's query log and the results
are unchanged.

Only marked statements are prepared, because preparing can change what a
statement means: a parameter the server cannot place (``SELECT %s``) is
typed text when prepared, but keeps its literal's type when sent as text.
A statement is prepared only outside a transaction, where a failed
``PREPARE`` aborts nothing; it is then always sent as text.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Mapping, Optional, Sequence, Set, Union

import psycopg2.extensions

# Prepared statements per connection at most; the marked ones are few.
MAX_PREPARED = 256

_PREPARABLE: Set[str] = set()


def preparable(sql: str) -> str:
    """Mark ``sql`` as worth preparing: run often, and each parameter used
    where the server infers the type the literal would have had."""
    _PREPARABLE.add(sql)
    return sql


_PLACEHOLDER = re.compile(r"%s|%%")


class PreparingConnection(psycopg2.extensions.connection):
    """A connection that remembers what it prepared; its cursors use it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cursor_factory = PreparingCursor
        # SQL text -> prepared name, or None when it cannot be prepared.
        self.prepared: Dict[str, Optional[str]] = {}


class PreparingCursor(psycopg2.extensions.cursor):
    def execute(self, query: Any, vars: Union[Sequence[Any], Mapping[str, Any], None] = None) -> Any:
        if not isinstance(vars, (list, tuple)) or not vars:
            return super().execute(query, vars)
        name = _statement_name(self.connection, query, vars)
        if name is None:
            return super().execute(query, vars)
        return super().execute(f"EXECUTE {name}({', '.join(['%s'] * len(vars))})", vars)


def _statement_name(conn: Any, query: Any, params: Sequence[Any]) -> Optional[str]:
    """The prepared name to run ``query`` under, preparing it now if it is due."""
    if not isinstance(conn, PreparingConnection) or not isinstance(query, str):
        return None
    if query in conn.prepared:
        return conn.prepared[query]
    if query not in _PREPARABLE or len(conn.prepared) >= MAX_PREPARED:
        return None
    if conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
        return None
    conn.prepared[query] = _prepare(conn, query, len(params))
    return conn.prepared[query]


def _prepare(conn: Any, query: str, count: int) -> Optional[str]:
    numbered = _numbered(query)
    if numbered is None or numbered[1] != count:
        return None
    name = f"dbos_stmt_{len(conn.prepared) + 1}"
    try:
        with psycopg2.extensions.cursor(conn) as cur:
            cur.execute(f"PREPARE {name} AS {numbered[0]}")
    except psycopg2.Error:
        return None
    return name


def _numbered(query: str) -> Optional[tuple[str, int]]:
    """``query`` with ``$1, $2...`` for its ``%s`` markers, and their count."""
    if "%(" in query:
        return None
    count = 0

    def number(match: "re.Match[str]") -> str:
        nonlocal count
        if match.group(0) == "%%":
            return "%"
        count += 1
        return f"${count}"

    return _PLACEHOLDER.sub(number, query), count
