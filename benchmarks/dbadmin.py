"""Fresh system databases for the benchmark runs, made and dropped from outside.

Used by the driver (bench.py) and by the floor workload, both of which run in
this project's virtual environment. psycopg2 is imported only where a
PostgreSQL database is touched, because workloads.py also runs under the
reference interpreter, which need not have psycopg2.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/dbos_bench"
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def url_for(backend: str, base_url: str, label: str) -> str:
    """The system database URL for one side (``label``) of a run.

    ``base_url`` names a SQLite file or a PostgreSQL database; each side gets
    its own database derived from it (``bench_ours.sqlite``,
    ``dbos_bench_reference``): ours and DBOS Transact lay out their tables
    differently, so they must never share one.
    """
    parts = urlsplit(base_url)
    if backend == "sqlite":
        stem, ext = os.path.splitext(sqlite_path(base_url))
        return f"sqlite:///{stem}_{label}{ext or '.sqlite'}"
    prefix = parts.path.lstrip("/")
    # Never derive from the maintenance database's own name.
    if not prefix or prefix == "postgres":
        prefix = "dbos_bench"
    return urlunsplit(parts._replace(path=f"/{prefix}_{label}"))


def sqlite_path(url: str) -> str:
    return url[len("sqlite:///"):]


def drop(url: str) -> None:
    """Remove the database at ``url`` if it exists; the library recreates it at launch."""
    if url.startswith("sqlite:"):
        for suffix in SQLITE_SUFFIXES:
            try:
                os.remove(sqlite_path(url) + suffix)
            except FileNotFoundError:
                pass
        return
    with _maintenance(url) as cur:
        # FORCE: a workload process killed on timeout may have left sessions.
        cur.execute(f'DROP DATABASE IF EXISTS "{_database_name(url)}" WITH (FORCE)')


def create(url: str) -> None:
    """Create an empty database at ``url`` (for the floor, which has no library to do it)."""
    if url.startswith("sqlite:"):
        os.makedirs(os.path.dirname(sqlite_path(url)) or ".", exist_ok=True)
        return
    with _maintenance(url) as cur:
        cur.execute(f'CREATE DATABASE "{_database_name(url)}"')


def _database_name(url: str) -> str:
    name = urlsplit(url).path.lstrip("/")
    if not name or '"' in name:
        raise ValueError(f"no usable database name in {url!r}")
    return name


@contextmanager
def _maintenance(url: str) -> Iterator[Any]:
    """An autocommit cursor on the server's ``postgres`` database (DROP/CREATE DATABASE need one)."""
    import psycopg2

    conn = psycopg2.connect(urlunsplit(urlsplit(url)._replace(path="/postgres")))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            yield cur
    finally:
        conn.close()
