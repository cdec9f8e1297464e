"""Named statements: how the system database's SQL is written and bound.

Every query lives as a ``Statement`` constant in the module of its table
group (``workflows.py``, ``steps.py``, ...), written once for both backends:

- ``{workflow_status}`` names a system table; on PostgreSQL it is qualified
  with the configured schema;
- ``{unread}``, ``{skip_locked}``, ... are the few expressions each backend
  spells its own way (``Backend.sql_tokens`` and ``Backend.statement_tokens``);
- ``:name`` is a parameter, bound by name. ``IN (:names)`` takes a list and
  ``VALUES :rows`` a list of tuples; each expands to as many markers as the
  values need.

A ``SystemDatabase`` compiles each statement once for its backend and schema
(``Compiled``), into the driver's positional markers and the order in which
the named values go; binding is then a list built from the names.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

# ':name', but not the second half of a PostgreSQL cast ('x::BIGINT').
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_LIST = re.compile(r"IN\s*\(\s*:([A-Za-z_]\w*)\s*\)", re.IGNORECASE)
_ROWS = re.compile(r"VALUES\s+:([A-Za-z_]\w*)", re.IGNORECASE)


@dataclass(frozen=True, eq=False)
class Statement:
    """One named statement; ``prepare``: run often enough to prepare on PostgreSQL.

    A statement is itself (compared and hashed by identity, the cheapest
    lookup on the hot path); one assembled per call gets its object from
    ``shaped``, so each shape is compiled once.
    """

    text: str
    prepare: bool = False


@functools.lru_cache(maxsize=256)
def shaped(text: str) -> Statement:
    """The statement of a text assembled per call (a listing's filters)."""
    return Statement(text)


# A compiled statement is literal text and parameters, in order. A parameter
# is (name, kind): kind "one" is a single marker, "list" a marker per item,
# "rows" a parenthesised group of markers per tuple.
Part = Tuple[str, str]


class Compiled:
    """A statement for one backend and schema."""

    def __init__(self, statement: Statement, tokens: Mapping[str, str], marker: str) -> None:
        text = statement.text.format_map(tokens)
        if marker == "%s":
            text = text.replace("%", "%%")  # psycopg's literal percent sign
        self.marker = marker
        self.prepare = statement.prepare
        kinds = {**dict.fromkeys(_LIST.findall(text), "list"), **dict.fromkeys(_ROWS.findall(text), "rows")}
        self._texts: List[str] = []
        self._params: List[Part] = []
        last = 0
        for match in _PARAM.finditer(text):
            self._texts.append(text[last:match.start()])
            self._params.append((match.group(1), kinds.get(match.group(1), "one")))
            last = match.end()
        self._texts.append(text[last:])
        self.names = tuple(name for name, _ in self._params)
        self.fixed = all(kind == "one" for _, kind in self._params)
        self.sql = marker.join(self._texts) if self.fixed else ""

    def bind(self, values: Mapping[str, Any]) -> Tuple[str, List[Any]]:
        """The SQL to send and its positional parameters."""
        if self.fixed:
            return self.sql, list(map(values.__getitem__, self.names))
        pieces: List[str] = [self._texts[0]]
        params: List[Any] = []
        for (name, kind), text in zip(self._params, self._texts[1:]):
            pieces.append(self._markers(kind, values[name], params))
            pieces.append(text)
        return "".join(pieces), params

    def worth_preparing(self, values: Mapping[str, Any]) -> bool:
        """Marked ``prepare``, and (for a statement with lists) in its one-item
        shape: the usual case, a send of one message; other shapes vary too much."""
        return self.prepare and all(kind == "one" or len(values[name]) == 1 for name, kind in self._params)

    def _markers(self, kind: str, value: Any, params: List[Any]) -> str:
        if kind == "one":
            params.append(value)
            return self.marker
        if kind == "list":
            items = list(value)
            params.extend(items)
            # An empty IN () is a syntax error; IN (NULL) matches nothing.
            return ", ".join([self.marker] * len(items)) if items else "NULL"
        rows: Sequence[Sequence[Any]] = value
        for row in rows:
            params.extend(row)
        return ", ".join("(" + ", ".join([self.marker] * len(row)) + ")" for row in rows)


# Compiled statements a database keeps: every constant one, and the most
# recent shapes of those assembled per call.
CATALOG_SIZE = 512


class Catalog:
    """The statements one database has compiled, each compiled on first use.

    ``compiled.get(statement) or catalog.compile(statement)``: the lookup
    every statement pays is a plain dict's.
    """

    def __init__(self, tokens: Mapping[str, str], marker: str) -> None:
        self._tokens = dict(tokens)
        self._marker = marker
        self.compiled: Dict[Statement, Compiled] = {}
        self._lock = threading.Lock()

    def compile(self, statement: Statement) -> Compiled:
        compiled = Compiled(statement, self._tokens, self._marker)
        with self._lock:
            if len(self.compiled) >= CATALOG_SIZE:
                self.compiled.pop(next(iter(self.compiled)))  # the oldest first
            self.compiled[statement] = compiled
        return compiled


# How a statement's cursor is read (``Connection.one``, ``rows``, ...).

def first_row(cursor: Any) -> Optional[Tuple[Any, ...]]:
    row: Optional[Tuple[Any, ...]] = cursor.fetchone()
    return row


def all_rows(cursor: Any) -> List[Tuple[Any, ...]]:
    rows: List[Tuple[Any, ...]] = cursor.fetchall()
    return rows


def row_count(cursor: Any) -> int:
    return int(cursor.rowcount or 0)


def row_records(cursor: Any) -> List[Dict[str, Any]]:
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]
