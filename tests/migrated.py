"""System databases already migrated to the latest version, for tests that
do not care how their database came to be.

Creating a PostgreSQL database costs about 0.2 s and migrating it as much
again; most tests pay that only to reach the state every launch reaches.
Here the migrations run once per session, into a template, and a thread
copies the template (``CREATE DATABASE ... TEMPLATE``) ahead of need, so a
test usually finds its copy ready and only renames it to its own name. On
SQLite the template is a file, copied.

Tests about creating or migrating a database must not use these: they take
``sys_db_url`` (a database that does not exist yet) and launch on it.
"""

from __future__ import annotations

import os
import queue
import shutil
import sqlite3
import threading
import uuid
from contextlib import closing
from typing import List, Optional

from dbos._sysdb import SystemDatabase
from tests.probe import database_name, execute, maintenance_url, sqlite_path

READY_AHEAD = 2  # copies kept ready: one for the next test, one being made


def migrate_once(url: str) -> None:
    """Create and migrate the database at ``url``; for SQLite, leave every
    change in the main file (no WAL beside it), so a plain copy holds it all."""
    db = SystemDatabase(url)
    try:
        db.migrate()
    finally:
        db.close()
    path = sqlite_path(url)
    if path is not None:
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def copy_sqlite(template_url: str, url: str) -> None:
    source, target = sqlite_path(template_url), sqlite_path(url)
    assert source is not None and target is not None
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(source, target)


class PostgresSupplier:
    """Keeps copies of a migrated template database ready, on a thread of its
    own; ``take`` renames one to the name a test was given."""

    def __init__(self, template_url: str) -> None:
        self.template_url = template_url
        self.ready: "queue.Queue[str]" = queue.Queue(maxsize=READY_AHEAD)
        self.stopping = threading.Event()
        self.failure: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, name="test-db-supplier", daemon=True)
        self.thread.start()

    def _copy(self, name: str) -> None:
        template = database_name(self.template_url)
        execute(maintenance_url(self.template_url), f'CREATE DATABASE "{name}" TEMPLATE "{template}"')

    def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                name = f"dbos_ready_{uuid.uuid4().hex[:12]}"
                self._copy(name)
                while not self._offer(name):
                    if self.stopping.is_set():
                        self._drop(name)
                        return
        except BaseException as exc:  # the next take reports it
            self.failure = exc

    def _offer(self, name: str) -> bool:
        try:
            self.ready.put(name, timeout=0.5)
        except queue.Full:
            return False
        return True

    def take(self, url: str) -> None:
        """Make the database ``url`` (not existing yet) a migrated copy."""
        name = self._next()
        execute(maintenance_url(url), f'ALTER DATABASE "{name}" RENAME TO "{database_name(url)}"')

    def _next(self) -> str:
        while True:
            try:
                return self.ready.get(timeout=1.0)
            except queue.Empty:
                if self.failure is not None or not self.thread.is_alive():
                    raise RuntimeError("the test database supplier stopped") from self.failure

    def _drop(self, name: str) -> None:
        execute(maintenance_url(self.template_url), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def finish(self) -> List[str]:
        """Stop making copies; return the names of those nobody took, to drop."""
        self.stopping.set()
        self.thread.join(timeout=60)
        left: List[str] = []
        while not self.ready.empty():
            left.append(self.ready.get_nowait())
        return left
