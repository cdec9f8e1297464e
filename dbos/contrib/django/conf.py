"""The DBOS configuration of a Django project: ``settings.DBOS`` plus Django's database.

``settings.DBOS`` is a ``DBOSConfig`` dict, validated by the same schema as
``DBOS(config=...)``. What it leaves out comes from Django:

- no ``system_database_url``: DBOS's system tables go into Django's
  ``default`` database (PostgreSQL: the same database, schema ``dbos``;
  SQLite: the same file);
- no ``application_database_url``/``database_url``/``application_datasource``:
  ``@DBOS.transaction`` runs on Django's own connection (``DjangoDatasource()``).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, cast

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS

from ..._config import DBOSConfig, validate_config
from ..._facade.dbos import DBOS
from ..._sysdb.url import DatabaseURL
from ...error import DBOSConfigError
from .datasource import DjangoDatasource

SETTING = "DBOS"

# libpq connection parameters a Django PostgreSQL OPTIONS dict may carry
# that the system database's connections need too.
_LIBPQ_OPTIONS = (
    "sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword", "options", "passfile",
    "service", "target_session_attrs", "connect_timeout", "application_name",
)


def dbos_config() -> DBOSConfig:
    """``settings.DBOS``, validated, with Django's database filling what it leaves out.

    Raises ``ImproperlyConfigured`` naming the offending field.
    """
    raw = getattr(settings, SETTING, None)
    if raw is None:
        raise ImproperlyConfigured(
            "settings.DBOS is missing: add DBOS = {'name': 'my-app'} to your settings "
            "(any DBOSConfig key may go there)"
        )
    try:
        validate_config(raw)
    except DBOSConfigError as exc:
        raise ImproperlyConfigured(
            f"settings.DBOS is invalid at '{exc.path or '(top level)'}': {exc.problem}"
        ) from exc
    config = cast(DBOSConfig, dict(raw))  # a copy: the settings stay as written
    if not config.get("system_database_url"):
        config["system_database_url"] = system_database_url(_databases(), DEFAULT_DB_ALIAS)
    if not (config.get("application_database_url") or config.get("database_url")
            or config.get("application_datasource")):
        config["application_datasource"] = DjangoDatasource(DEFAULT_DB_ALIAS)
    return config


def _databases() -> Mapping[str, Mapping[str, Any]]:
    databases: Mapping[str, Mapping[str, Any]] = getattr(settings, "DATABASES", {})
    return databases


def system_database_url(databases: Mapping[str, Mapping[str, Any]], alias: str) -> str:
    """A URL of Django's database ``alias`` for DBOS's system tables.

    Reads the settings as they are now: Django's test runner renames the
    database after ``ready()``, and ``launch()`` follows it there.
    """
    entry = databases.get(alias)
    if entry is None:
        raise ImproperlyConfigured(
            f"settings.DATABASES has no {alias!r} database for DBOS's system tables: "
            "set system_database_url in settings.DBOS"
        )
    engine = str(entry.get("ENGINE") or "")
    if engine.endswith("sqlite3"):
        return _sqlite_url(entry, alias)
    if engine.endswith(("postgresql", "postgis", "postgresql_psycopg2")):
        return _postgres_url(entry)
    raise ImproperlyConfigured(
        f"DBOS keeps its system tables in SQLite or PostgreSQL, but DATABASES[{alias!r}] "
        f"uses {engine or 'no ENGINE'}: set system_database_url in settings.DBOS"
    )


def _sqlite_url(entry: Mapping[str, Any], alias: str) -> str:
    name = str(entry.get("NAME") or "")
    # Another connection (DBOS's own pool) cannot see an in-memory database,
    # and nothing in memory survives the crash DBOS is there to recover from.
    if not name or name == ":memory:" or name.startswith("file:") or "mode=memory" in name:
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}] is an in-memory or URI SQLite database ({name or 'no NAME'}), "
            "which cannot hold DBOS's system tables: give it a file NAME (in tests, "
            f"DATABASES[{alias!r}]['TEST']['NAME']) or set system_database_url in settings.DBOS"
        )
    return DatabaseURL("sqlite", os.path.abspath(name)).render()


def _postgres_url(entry: Mapping[str, Any]) -> str:
    options: Mapping[str, Any] = entry.get("OPTIONS") or {}
    query: Dict[str, str] = {k: str(options[k]) for k in _LIBPQ_OPTIONS if options.get(k) is not None}
    host: Optional[str] = str(entry.get("HOST") or "") or None
    if host is not None and host.startswith("/"):
        # A Unix socket directory cannot be a URL's host; libpq takes it as a parameter.
        query["host"], host = host, None
    port = str(entry.get("PORT") or "")
    return DatabaseURL(
        "postgresql",
        str(entry.get("NAME") or "postgres"),
        host=host,
        port=int(port) if port else None,
        user=str(entry.get("USER") or "") or None,
        password=str(entry.get("PASSWORD") or "") or None,
        query=query,
    ).render()


# The configuration this module constructed DBOS with, to tell that instance
# from one the project constructed itself.
_constructed: Optional[DBOSConfig] = None


def configure(config: Optional[DBOSConfig] = None) -> None:
    """Construct ``DBOS`` from the settings: validates them, starts no thread, opens nothing.

    A ``DBOS`` the project constructed itself before is kept as it is.
    """
    global _constructed
    config = config if config is not None else dbos_config()
    if DBOS.config is None:
        DBOS(config=config)
        _constructed = config


def constructed_here() -> bool:
    """Whether the running ``DBOS`` is the one ``configure()`` constructed."""
    current = DBOS.config
    return current is not None and current == _constructed
