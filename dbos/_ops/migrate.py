"""Migrating the system database from deploy tooling, without launching an app."""

from __future__ import annotations

import shlex
from typing import List, Optional

from .._datasource import PeeweeDatasource
from .._sysdb import DatabaseURL, SystemDatabase


def run_dbos_database_migrations(
    system_database_url: str,
    *,
    app_database_url: Optional[str] = None,
    schema: str = "dbos",
    application_role: Optional[str] = None,
) -> List[int]:
    """Create the system database if missing and apply pending migrations;
    with ``app_database_url``, also create that database if missing, with its
    ``transaction_outputs`` table in ``schema``.

    Returns the versions applied (empty when the schema was current).
    """
    sysdb = SystemDatabase(system_database_url, schema=schema, pool_size=2)
    try:
        applied = sysdb.migrate()
        if application_role:
            sysdb.grant(application_role)
    finally:
        sysdb.close()
    if app_database_url:
        prepare_application_database(app_database_url, schema)
    return applied


def prepare_application_database(url: str, schema: str) -> None:
    """The application database, created if missing, as DBOS Transact's
    ``dbos migrate`` leaves it: the app's own migrations (alembic, say) need
    it to exist, and ``@DBOS.transaction`` finds its table there."""
    source = PeeweeDatasource.from_url(url, pool_size=1)
    try:
        source.schema = schema
        source.ensure_schema()
    finally:
        source.close()


def migrate_command(url: DatabaseURL, schema: Optional[str]) -> str:
    """The command an operator runs to migrate this database."""
    command = f"dbos migrate --sys-db-url {shlex.quote(str(url))}"
    if schema and schema != "dbos" and not url.is_sqlite:
        command += f" --schema {shlex.quote(schema)}"
    return command
