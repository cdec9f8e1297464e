"""What a ``DBOSClient`` reads through, and the handles it returns.

``ClientStorage`` holds the client's system database. Nothing about the
schema is checked when it is opened: the first call that needs the schema
creates the database if it is missing and migrates it if it is behind, as
``DBOS.launch()`` would and under the same lock, then remembers that it is
current, so later calls add no round trip. A client can thus be made before
any application has launched against the database.

The client's waits (a result, an event, a stream value, the first of several
workflows) are the engine's own, given a ``ClientWaits`` in place of the
engine: the same reads, the same wake-ups, but nothing is checkpointed, even
when the client is called from inside a workflow.
"""

from __future__ import annotations

import threading
from asyncio import to_thread
from dataclasses import dataclass
from typing import Any, Dict, Optional, TypeVar

from .._engine.engine import LISTENER_RECHECK_S
from .._engine.handles import WorkflowHandle, WorkflowHandleAsync
from .._engine.waiters import Waiters
from .._engine.workflow import decode_outcome, wait_outcome
from .._serialization import Codec
from .._status import WorkflowStatus
from .._sysdb import DatabaseURL, Storage, SystemDatabase
from .._sysdb.notifications import LISTENING
from .._sysdb.storage import Listening
from .management import Management
from .migrate import migrate_command

R = TypeVar("R")
T = TypeVar("T")

# How often a client's waits look again when nothing wakes them.
DEFAULT_POLL_S = 1.0
# The application name PostgreSQL shows for the client's connections.
CLIENT_APPLICATION_NAME = "dbos_transact_client"


@dataclass
class ClientWaits:
    """What the engine's waits need (see ``_engine.waiting.Waitable``), for a
    client: it runs no workflow, so none is ever cancelled here."""

    sysdb: Storage
    codec: Codec
    waiters: Waiters
    poll_interval: float

    def is_cancelled(self, workflow_id: str) -> bool:
        return False


class ClientStorage:
    """A client's system database, created and migrated the first time it is needed."""

    def __init__(self, url: DatabaseURL, *, schema: str, codec: Codec, pool_size: int,
                 application_name: Optional[str]) -> None:
        connect_args: Dict[str, Any] = {}
        if not url.is_sqlite:
            connect_args["application_name"] = CLIENT_APPLICATION_NAME
        self.sysdb = SystemDatabase(url, schema=schema, pool_size=pool_size, connect_args=connect_args,
                                    bounded=True)  # a client starts new work: it may give up during an outage
        self.codec = codec
        self.waiters = Waiters()
        self.management = Management(self.sysdb, codec, application_name)
        self.poll_interval = DEFAULT_POLL_S
        self._listener: Optional[Listening] = None
        self._current = False  # whether the schema is known to be current
        self._lock = threading.Lock()

    def check_connection(self) -> None:
        """Raise ``DBOSSystemDatabaseError`` if the database server cannot be reached.

        A database not created yet (or an absent SQLite file) is fine: the
        first call that needs it creates it.
        """
        self.sysdb.exists()  # connects to the database, or to the server if it is missing

    def ready(self) -> SystemDatabase:
        """The system database, its schema made current on first use."""
        if not self._current:
            with self._lock:
                if not self._current:
                    self.sysdb.migrate_if_behind(migrate_command(self.sysdb.url, self.sysdb.schema))
                    self._current = True
        return self.sysdb

    def manage(self) -> Management:
        """Management of this database's workflows, once its schema is current."""
        self.ready()
        return self.management

    def waits(self, poll_interval: Optional[float] = None) -> ClientWaits:
        """What the engine's waits read through, polling every ``poll_interval`` (default: the client's)."""
        return ClientWaits(self.ready(), self.codec, self.waiters, poll_interval or self.poll_interval)

    def listen(self) -> None:
        """Wake waits at once when another process notifies (LISTEN, or SQLite's doorbell)."""
        self._listener = self.sysdb.listen(self._on_key)
        if self._listener is not None and self._listener.reliable:
            # Notifications can be lost across a reconnect: look again now and then.
            self.poll_interval = max(LISTENER_RECHECK_S, DEFAULT_POLL_S)

    def _on_key(self, key: str) -> None:
        if key == LISTENING:  # (re)connected: whatever was missed meanwhile, look again
            self.waiters.wake_all()
        else:
            self.waiters.wake(key)

    def result(self, workflow_id: str, polling_interval_sec: float) -> Any:
        """The workflow's recorded result (or error raised), waiting for it."""
        waits = self.waits()
        return decode_outcome(self.codec, workflow_id, wait_outcome(waits, workflow_id, polling_interval_sec))

    def status(self, workflow_id: str) -> WorkflowStatus:
        return self.manage().require(workflow_id)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        self.sysdb.close()


class ClientHandle(WorkflowHandle[R]):
    """A workflow handle that polls through a client; never checkpointed."""

    def __init__(self, storage: ClientStorage, workflow_id: str) -> None:
        super().__init__(workflow_id)
        self._storage = storage

    def get_result(self, *, polling_interval_sec: float = DEFAULT_POLL_S) -> R:
        result: R = self._storage.result(self.workflow_id, polling_interval_sec)
        return result

    def get_status(self) -> WorkflowStatus:
        return self._storage.status(self.workflow_id)


class ClientHandleAsync(WorkflowHandleAsync[R]):
    """``ClientHandle`` for async code: the same waits, on a worker thread."""

    def __init__(self, storage: ClientStorage, workflow_id: str) -> None:
        super().__init__(workflow_id)
        self._storage = storage

    async def get_result(self, *, polling_interval_sec: float = DEFAULT_POLL_S) -> R:
        result: R = await to_thread(self._storage.result, self.workflow_id, polling_interval_sec)
        return result

    async def get_status(self) -> WorkflowStatus:
        return await to_thread(self._storage.status, self.workflow_id)
