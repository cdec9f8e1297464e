"""An independent look at a database, on connections the code under test never saw."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from typing import Any, List, Optional, Set
from urllib.parse import urlsplit

import psycopg2

SYSTEM_TABLES = {
    "workflow_status",
    "operation_outputs",
    "notifications",
    "workflow_events",
    "workflow_events_history",
    "streams",
    "application_versions",
    "dbos_migrations",
}


def sqlite_path(url: str) -> Optional[str]:
    return url[len("sqlite:///"):] if url.startswith("sqlite:") else None


def maintenance_url(url: str) -> str:
    return urlsplit(url)._replace(path="/postgres").geturl()


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> List[tuple[Any, ...]]:
    """Rows of one statement (``%s`` placeholders on both backends)."""
    path = sqlite_path(url)
    if path is not None:
        # Read-only, so looking never creates a missing file.
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            return list(conn.execute(sql.replace("%s", "?"), params))
    with closing(psycopg2.connect(url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []


def database_exists(url: str) -> bool:
    path = sqlite_path(url)
    if path is not None:
        return os.path.exists(path)
    sql = "SELECT 1 FROM pg_database WHERE datname = %s"
    return bool(query(maintenance_url(url), sql, (database_name(url),)))


def table_names(url: str, schema: str = "dbos") -> Set[str]:
    if sqlite_path(url) is not None:
        rows = query(url, "SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        sql = "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
        rows = query(url, sql, (schema,))
    return {str(r[0]) for r in rows}


def qualified(url: str, table: str, schema: str = "dbos") -> str:
    return table if sqlite_path(url) is not None else f'"{schema}"."{table}"'


def migration_version(url: str, schema: str = "dbos") -> int:
    rows = query(url, f"SELECT MAX(version) FROM {qualified(url, 'dbos_migrations', schema)}")
    return int(rows[0][0])


def execute(url: str, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Change the database behind the library's back (to stage a crash, say)."""
    path = sqlite_path(url)
    if path is not None:
        with closing(sqlite3.connect(path)) as conn:
            conn.execute(sql.replace("%s", "?"), params)
            conn.commit()
        return
    with closing(psycopg2.connect(url)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql, params)


def driver_connection(url: str, timeout: float = 5.0) -> Any:
    """A new plain driver connection in autocommit mode."""
    from dbos._sysdb import DatabaseURL

    parsed = DatabaseURL.parse(url)
    if parsed.is_sqlite:
        return sqlite3.connect(parsed.sqlite_path, timeout=timeout, isolation_level=None)
    conn = psycopg2.connect(dbname=parsed.database, **parsed.connect_kwargs())
    conn.autocommit = True
    return conn


def drop_database(url: str) -> None:
    """Drop a test's PostgreSQL database whole, whatever it holds (the library's
    own drop keeps databases that hold other data); a SQLite file is deleted."""
    path = sqlite_path(url)
    if path is not None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        return
    execute(maintenance_url(url), f'DROP DATABASE IF EXISTS "{database_name(url)}" WITH (FORCE)')
