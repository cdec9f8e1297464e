"""The versioned migrations of the system database, and their runner."""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Dict, List, Optional, Sequence, Tuple

import peewee as pw

from ..error import DBOSSystemDatabaseError
from .backend import Backend
from .connection import Connection
from .failures import describe_failure
from .statements import Statement

if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:
    from importlib.abc import Traversable

logger = logging.getLogger("dbos")

# NNNN_name.sql serves every backend; NNNN_name.<backend>.sql serves one.
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)(?:\.(postgres|sqlite))?\.sql$")
SHARED = "*"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    scripts: Dict[str, str] = field(default_factory=dict)

    def script_for(self, backend: Backend) -> str:
        # A version with no file for this backend is empty there, but counted.
        if backend.name in self.scripts:
            return self.scripts[backend.name]
        return backend.render_shared_sql(self.scripts.get(SHARED, ""))


def read_migrations(directory: Traversable) -> Tuple[Migration, ...]:
    """The migrations in ``directory``, in order, checked for gaps."""
    found: Dict[int, Migration] = {}
    for entry in directory.iterdir():
        match = _FILE.match(entry.name)
        if not match:
            continue
        version, name, backend = int(match[1]), match[2], match[3] or SHARED
        migration = found.setdefault(version, Migration(version, name))
        migration.scripts[backend] = entry.read_text(encoding="utf-8")
    versions = sorted(found)
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migration numbers must run 1..N without gaps, found {versions}")
    return tuple(found[v] for v in versions)


@lru_cache(maxsize=1)
def load_migrations() -> Tuple[Migration, ...]:
    """Every migration shipped in the package ``dbos._migrations``."""
    return read_migrations(resources.files("dbos._migrations"))


def latest_version() -> int:
    return len(load_migrations())


CURRENT_VERSION = Statement("SELECT MAX(version) FROM {dbos_migrations}")
CLEAR_VERSION = Statement("DELETE FROM {dbos_migrations}")
SET_VERSION = Statement("INSERT INTO {dbos_migrations} (version) VALUES (:version)")


class Migrator:
    """Applies pending migrations, each in its own transaction, on the
    connection of the unit of work it runs in.

    ``migrations`` defaults to those shipped in the package; tools and tests
    may pass their own (as read by ``read_migrations``).
    """

    def __init__(self, connection: Connection, migrations: Optional[Sequence[Migration]] = None) -> None:
        self.connection = connection
        self.backend: Backend = connection.backend
        self.db: pw.Database = connection.database
        self.migrations: Sequence[Migration] = (
            load_migrations() if migrations is None else migrations
        )

    def current_version(self) -> int:
        """The applied version; 0 for a database never migrated."""
        with self.connection.naming("reading the migration version"):
            if not self.db.table_exists("dbos_migrations", schema=self.backend.schema):
                return 0
        row = self.connection.one(CURRENT_VERSION)
        return int(row[0]) if row and row[0] is not None else 0

    def migrate(self) -> List[int]:
        """Apply what is pending; return the versions this call applied."""
        target = len(self.migrations)
        if self.current_version() >= target:
            return []
        # Errors inside are named where they happen; the outer name is for the lock's own.
        with self.connection.naming("taking or releasing the migration lock"), \
                self.backend.migration_lock(self.db):
            with self.connection.naming("creating the migration table"), self.db.atomic():
                for statement in self.backend.bootstrap_sql():
                    self.db.execute_sql(statement)
            return [m.version for m in self.migrations if self._apply(m)]

    def _apply(self, migration: Migration) -> bool:
        try:
            applied = self._apply_in_transaction(migration)
        except pw.PeeweeException as exc:
            if self.backend.is_disconnect(exc):
                raise  # the caller retries on a new connection
            raise self._failed(migration, exc) from exc
        if applied:
            logger.info(f"Applied system database migration {migration.version} ({migration.name})")
        return applied

    def _apply_in_transaction(self, migration: Migration) -> bool:
        with self.db.atomic():
            # Re-read inside the transaction: another process may have applied it.
            if self.current_version() >= migration.version:
                return False
            script = migration.script_for(self.backend)
            if script.strip():
                self.backend.run_script(self.db, script)
            self.connection.rowcount(CLEAR_VERSION)
            self.connection.rowcount(SET_VERSION, version=migration.version)
        return True

    def _failed(self, migration: Migration, exc: BaseException) -> DBOSSystemDatabaseError:
        operation = f"applying migration {migration.version} ({migration.name}), which was rolled back"
        return describe_failure(self.backend.url, operation, exc)
