"""``manage.py dbos_migrate``: create or upgrade DBOS's tables, without launching.

Like ``dbos migrate`` for a Django project: the database comes from
``settings.DBOS`` (by default Django's own). Run it on deploy, next to
``migrate``; launching migrates too unless ``run_migrations`` is false.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dbos._datasource import Datasource
from dbos._ops.migrate import run_dbos_database_migrations
from dbos._sysdb.url import DatabaseURL
from dbos.contrib.django.conf import dbos_config
from dbos.error import DBOSException


class Command(BaseCommand):  # type: ignore[misc]  # Django ships no type hints
    help = (
        "Create DBOS's system tables (in Django's database unless settings.DBOS names "
        "another) and apply pending migrations, then create transaction_outputs in the "
        "application database. Launches nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "-r", "--app-role", help="PostgreSQL role to grant access to the system tables"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        config = dbos_config()
        url = str(config.get("system_database_url"))
        shown = DatabaseURL.parse(url)  # str() hides the password
        try:
            applied = run_dbos_database_migrations(
                url, schema=config.get("dbos_system_schema") or "dbos",
                application_role=options["app_role"],
            )
            datasource = config.get("application_datasource")
            if isinstance(datasource, Datasource):
                datasource.ensure_schema()
        except DBOSException as exc:
            raise CommandError(" ".join(str(exc).split())) from exc
        if applied:
            self.stdout.write(f"Migrated the DBOS system database at {shown} to version {applied[-1]}")
        else:
            self.stdout.write(f"The DBOS system database at {shown} is up to date")
