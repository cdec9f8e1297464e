"""``dbos migrate --print-migrations`` and ``--print-user-role``: the SQL that
``dbos migrate`` would run on PostgreSQL, printed for a DBA to review and
run with ``psql``, without connecting to any database.

Each migration is one transaction, as ``dbos migrate`` applies it, and
records its version in ``dbos_migrations`` so that a later ``dbos migrate``
knows what is done.
"""

from __future__ import annotations

from typing import List, Optional

from .._sysdb import DatabaseURL
from .._sysdb.backend import Backend, backend_for
from .._sysdb.migrator import load_migrations
from .cli_target import CLIError

# Only the schema matters to the SQL; no connection is made.
PLACEHOLDER_URL = "postgresql://localhost/dbos"


def postgres_backend(url: Optional[DatabaseURL], schema: str) -> Backend:
    if url is not None and url.is_sqlite:
        raise CLIError(f"The system database at {url} is SQLite: --print-migrations and "
                       "--print-user-role print PostgreSQL SQL; run `dbos migrate` instead")
    return backend_for(url or DatabaseURL.parse(PLACEHOLDER_URL), schema)


def first_version(which: str) -> int:
    """``all`` is 1 (with the fresh database's preamble), else the number given."""
    latest = len(load_migrations())
    if which == "all":
        return 1
    if not which.isdigit() or not 1 <= int(which) <= latest:
        raise CLIError(f"--print-migrations takes 'all' or a migration number from 1 to {latest}, "
                       f"not {which!r}")
    return int(which)


def migrations_sql(backend: Backend, which: str) -> str:
    """The migrations from ``which`` on, as a script for ``psql``."""
    start = first_version(which)
    lines = ["-- DBOS system database migrations"]
    if which == "all":
        lines += ["-- For a new database: creates the schema and the version table first."]
        lines += [statement + ";" for statement in backend.bootstrap_sql()]
    versions = backend.qualified("dbos_migrations")
    for migration in load_migrations()[start - 1:]:
        lines += [f"-- Migration {migration.version} ({migration.name})", "BEGIN;",
                  f'SET LOCAL search_path TO "{backend.schema}", public;',
                  migration.script_for(backend).strip(),
                  f"DELETE FROM {versions};",
                  f"INSERT INTO {versions} (version) VALUES ({migration.version});", "COMMIT;"]
    return "\n".join(lines)


def user_role_sql(backend: Backend, role: str) -> str:
    statements: List[str] = backend.grant_sql(role)
    return "\n".join(["-- Permissions on the DBOS system schema", *(s + ";" for s in statements)])
