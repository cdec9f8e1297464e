"""``SystemDatabase``: the storage interface, implemented over SQL.

The operations come from one module per table group (steps, workflows,
messages, queues, listing, forks, versions, ownership, delayed), each with its
named statements; this class puts them together and adds the schema's lifecycle. It runs the
portable SQL that SQLite and PostgreSQL both understand, which is what
SQLite runs; ``PostgresSystemDatabase`` replaces the few operations
PostgreSQL does better. ``SystemDatabase(url)`` builds whichever the URL names.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Type, Union

from ..error import DBOSMigrationRequiredError, DBOSSystemDatabaseError
from .delayed import DelayedRows
from .doorbell import Doorbell, listen_on, open_doorbell
from .errors import driver_error, permission_denied
from .executors import ExecutorRows
from .forks import ForkRows
from .gauges import GaugeRows
from .listing import ListingRows
from .messages import MessageRows
from .migrator import Migration, Migrator, latest_version
from .outage import new_work
from .overview import OverviewRows
from .ownership import OwnershipRows
from .queues import QueueRows
from .schedules import ScheduleRows
from .storage import Listening, Storage
from .url import DatabaseURL
from .versions import VersionRows


class SystemDatabase(MessageRows, QueueRows, ListingRows, ForkRows, VersionRows, OwnershipRows, DelayedRows,
                     ScheduleRows, ExecutorRows, GaugeRows, OverviewRows, Storage):
    # The class each dialect's URLs get (see ``__init_subclass__``).
    _by_dialect: Dict[str, Type["SystemDatabase"]] = {}
    dialect: str = "sqlite"
    # SQLite's doorbell, opened on first use; False where there is none.
    _doorbell: Union[Doorbell, bool, None] = None
    _doorbell_lock = threading.Lock()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        SystemDatabase._by_dialect[cls.dialect] = cls

    def __new__(cls, url: Union[str, DatabaseURL], **kwargs: Any) -> "SystemDatabase":
        if cls is SystemDatabase:
            parsed = DatabaseURL.parse(url) if isinstance(url, str) else url
            cls = SystemDatabase._by_dialect.get("sqlite" if parsed.is_sqlite else "postgres", cls)
        return super().__new__(cls)

    def listen(self, on_key: Callable[[str], None]) -> Optional[Listening]:
        """Start waking ``on_key`` for keys other processes notify; None
        where processes cannot notify each other (waiters poll): on SQLite,
        through the doorbell beside the file (``doorbell.py``)."""
        doorbell = self._doorbell_of()
        return None if doorbell is None else listen_on(doorbell, on_key)

    def announce(self, keys: Sequence[str]) -> None:
        doorbell = self._doorbell_of()
        if doorbell is not None:
            doorbell.ring(keys)

    def _doorbell_of(self) -> Optional[Doorbell]:
        """This SQLite file's doorbell, opened on first use (never on PostgreSQL,
        whose ``notify`` and ``listen`` go through the server)."""
        if self._doorbell is None and self.url.is_sqlite:
            with self._doorbell_lock:
                if self._doorbell is None:
                    self._doorbell = open_doorbell(self.url.sqlite_path) or False
        return self._doorbell if isinstance(self._doorbell, Doorbell) else None

    def close(self) -> None:
        super().close()
        with self._doorbell_lock:
            doorbell, self._doorbell = self._doorbell, None
        if isinstance(doorbell, Doorbell):
            doorbell.close()  # its descriptors; a later ring opens it again

    # ------------------------------------------------------------------
    # The schema's lifecycle
    # ------------------------------------------------------------------

    def exists(self) -> bool:
        """Whether the database (PostgreSQL) or its file (SQLite) exists."""
        with self.wrapped_errors("checking that the database exists"):
            return self.backend.database_exists()

    def create_if_missing(self) -> None:
        """Create the database if it does not exist; safe when others race to."""
        with self.wrapped_errors("creating or opening the database"):
            self.backend.create_database()

    def migrate(self, migrations: Optional[Sequence[Migration]] = None) -> List[int]:
        """Create the database if needed and apply every pending migration.

        ``migrations`` defaults to those shipped in the package.
        """
        # Migrating is new work (of a launch, or of `dbos migrate`): during an
        # outage it gives up after the limit, and on a full disk at once.
        with new_work():
            self.create_if_missing()
            migrator = Migrator(self, migrations)
            for attempt in self.attempts(transaction=False):
                with attempt:
                    applied = migrator.migrate()
        return applied

    def schema_version(self) -> int:
        """The applied migration version; 0 for a database never migrated."""
        if not self.exists():
            return 0
        for attempt in self.attempts():
            with attempt:
                version = Migrator(self).current_version()
        return version

    def verify_schema(self, command: str) -> None:
        """Raise if the schema is behind this code; a newer schema is fine."""
        current, required = self.schema_version(), latest_version()
        if current < required:
            raise DBOSMigrationRequiredError(current, required, command)

    def migrate_if_behind(self, command: str) -> List[int]:
        """Create and migrate the database if its schema is missing or behind,
        as a launch does, under the same lock; where this database role may
        not, ``DBOSMigrationRequiredError`` says to run ``command``. Returns
        the versions applied."""
        current = 0
        try:
            current = self.schema_version()
            return self.migrate() if current < latest_version() else []
        except DBOSSystemDatabaseError as exc:
            if not permission_denied(exc):
                raise
            detail = " ".join(str(driver_error(exc)).split())
            who = f"the database role {self.url.user!r}" if self.url.user else "this process"
            where = "file" if self.url.is_sqlite else "database"
            raise DBOSMigrationRequiredError(
                current, latest_version(), command,
                reason=f"{who} may not create or migrate the system {where} {self.url.database!r} ({detail})",
                then="as a role that may (the database's owner, say), then call again") from exc

    def grant(self, role: str) -> None:
        """Give an application role access to the system tables (PostgreSQL)."""
        for attempt in self.attempts():
            with attempt:
                for statement in self.backend.grant_sql(role):
                    self.execute(statement)

    def table_names(self) -> List[str]:
        """The tables of the system database's schema (or file)."""
        for attempt in self.attempts(transaction=False):
            with attempt, self.naming("listing the system tables"):
                names = self.backend.table_names(self.database)
        return names

    def truncate(self) -> None:
        """Delete every row but the migration version; keep the schema."""
        present = set(self.table_names())
        tables = [m._meta.table_name for m in self.models.data_tables()]
        for attempt in self.attempts():
            with attempt, self.naming("emptying the system tables"):
                self.backend.truncate(self.database, [t for t in tables if t in present])

    def drop(self) -> str:
        """Drop the whole database (PostgreSQL) or delete its file (SQLite).

        A database that also holds other data (an application's tables beside
        ours) keeps it: only our schema (PostgreSQL) or our tables (SQLite) go.
        Returns what was dropped: "database", "schema" or "tables".
        """
        self.close()
        own = list(self.models.by_table)
        with self.wrapped_errors("dropping the database"):
            return self.backend.drop_database(own)
