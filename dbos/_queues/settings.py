"""A queue's settings as properties, and the setters of a queue kept in the database.

A queue declared in code answers from its declaration. A queue kept in the
database (``DBOS.register_queue``, ``DBOSClient.register_queue``) reads its
row on every access, so it shows what other processes changed; each setter
checks its value, reads the row, checks the change against the other limits
there, and writes only that setting's columns. Setters of a queue declared
in code raise ``DBOSException``: its limits live in each process's code.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, Optional, Protocol

from .._engine.engine import get_engine
from ..error import DBOSException
from .limits import QueueConfig, QueueRateLimit, config_from_row
from .limits_update import changed_columns, check_value

logger = logging.getLogger("dbos")


class QueueStore(Protocol):
    """Where a queue kept in the database is read and changed: a system database."""

    def get_queue(self, name: str) -> Optional[Dict[str, Any]]:
        """The queue's row; None if there is none."""

    def update_queue(self, name: str, fields: Dict[str, Any]) -> bool:
        """Write these columns of the queue's row; False if there is no row."""


def warn_in_loop(what: str) -> None:
    """A blocking database read called from a running event loop stalls it: say so."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    logger.warning(f"{what} reads the system database and blocks the running event loop; "
                   f"use its _async variant in async code")


class QueueSettings:
    """The configuration half of ``Queue``."""

    name: str
    database_backed: bool
    _config: QueueConfig
    _store: Optional[QueueStore]  # a client's system database; None: the launched DBOS's
    _owner: Optional[str]

    def _storage(self) -> QueueStore:
        if self._store is not None:
            return self._store
        return get_engine(f"Queue {self.name}").sysdb

    def current_config(self) -> Optional[QueueConfig]:
        """The limits in force now; None when a registered queue's row was deleted."""
        if not self.database_backed:
            return self._config
        row = self._storage().get_queue(self.name)
        if row is None:
            return None
        self._config, self._owner = config_from_row(row), row.get("application_name")
        return self._config

    def config(self) -> QueueConfig:
        """The limits in force now (``DBOSException`` if a registered queue's row is gone)."""
        found = self.current_config()
        if found is None:
            raise DBOSException(f"Queue {self.name} is not registered in the database (it was deleted)")
        return found

    def _read(self, what: str) -> QueueConfig:
        if self.database_backed:
            warn_in_loop(f"Queue.{what}")
        return self.config()

    async def _read_async(self) -> QueueConfig:
        return self.config() if not self.database_backed else await asyncio.to_thread(self.config)

    def _set(self, setting: str, value: Any) -> None:
        if not self.database_backed:
            raise DBOSException(f"Cannot set {setting} on queue {self.name}: it is declared in code; only a "
                                "queue registered with register_queue can be changed at run time")
        value = check_value(setting, value)
        fields = changed_columns(self.name, self.config(), setting, value)
        if not self._storage().update_queue(self.name, fields):
            raise DBOSException(f"Queue {self.name} is not registered in the database (it was deleted)")
        self.current_config()

    def _set_sync(self, setting: str, value: Any) -> None:
        if self.database_backed:
            warn_in_loop(f"Queue.set_{setting}")
        self._set(setting, value)

    async def _set_async(self, setting: str, value: Any) -> None:
        await asyncio.to_thread(self._set, setting, value)

    # Getters ------------------------------------------------------------

    @property
    def concurrency(self) -> Optional[int]:
        """Deprecated: ``global_concurrency`` (per partition under ``partition_queue``)."""
        return self._read("concurrency").concurrency

    async def get_concurrency_async(self) -> Optional[int]:
        return (await self._read_async()).concurrency

    @property
    def global_concurrency(self) -> Optional[int]:
        """How many of the queue's workflows may run at once, in all processes together."""
        return self._read("global_concurrency").resolved().global_concurrency

    async def get_global_concurrency_async(self) -> Optional[int]:
        return (await self._read_async()).resolved().global_concurrency

    @property
    def worker_concurrency(self) -> Optional[int]:
        """How many of the queue's workflows one process may run at once."""
        return self._read("worker_concurrency").resolved().worker_concurrency

    async def get_worker_concurrency_async(self) -> Optional[int]:
        return (await self._read_async()).resolved().worker_concurrency

    @property
    def limiter(self) -> Optional[QueueRateLimit]:
        """At most ``limit`` starts per ``period`` seconds, for the whole queue."""
        return self._read("limiter").resolved().limiter

    async def get_limiter_async(self) -> Optional[QueueRateLimit]:
        return (await self._read_async()).resolved().limiter

    @property
    def partition_concurrency(self) -> Optional[int]:
        """How many workflows of one partition key may run at once, in all processes."""
        return self._read("partition_concurrency").resolved().partition_concurrency

    async def get_partition_concurrency_async(self) -> Optional[int]:
        return (await self._read_async()).resolved().partition_concurrency

    @property
    def partition_worker_concurrency(self) -> Optional[int]:
        """How many workflows of one partition key one process may run at once."""
        return self._read("partition_worker_concurrency").resolved().partition_worker_concurrency

    async def get_partition_worker_concurrency_async(self) -> Optional[int]:
        return (await self._read_async()).resolved().partition_worker_concurrency

    @property
    def partition_limiter(self) -> Optional[QueueRateLimit]:
        """A rate limit applied to each partition key separately."""
        return self._read("partition_limiter").resolved().partition_limiter

    async def get_partition_limiter_async(self) -> Optional[QueueRateLimit]:
        return (await self._read_async()).resolved().partition_limiter

    @property
    def priority_enabled(self) -> bool:
        """Deprecated: priority is always honoured."""
        return self._read("priority_enabled").priority_enabled

    async def get_priority_enabled_async(self) -> bool:
        return (await self._read_async()).priority_enabled

    @property
    def partition_queue(self) -> bool:
        """Deprecated: whether the queue is partitioned (every enqueue needs a partition key)."""
        return self._read("partition_queue").partitioned

    async def get_partition_queue_async(self) -> bool:
        return (await self._read_async()).partitioned

    @property
    def polling_interval_sec(self) -> float:
        """How often each process's worker looks for work on this queue."""
        return self._read("polling_interval_sec").polling_interval_sec

    async def get_polling_interval_sec_async(self) -> float:
        return (await self._read_async()).polling_interval_sec

    @property
    def application_name(self) -> Optional[str]:
        """The application that owns a registered queue (None: declared in code, or unclaimed)."""
        self._read("application_name")
        return self._owner

    async def get_application_name_async(self) -> Optional[str]:
        await self._read_async()
        return self._owner

    # Setters ------------------------------------------------------------

    def set_concurrency(self, value: Optional[int]) -> None:
        """Deprecated: ``set_global_concurrency``."""
        self._set_sync("concurrency", value)

    async def set_concurrency_async(self, value: Optional[int]) -> None:
        await self._set_async("concurrency", value)

    def set_global_concurrency(self, value: Optional[int]) -> None:
        """Change the limit on running workflows across all processes (None: no limit)."""
        self._set_sync("global_concurrency", value)

    async def set_global_concurrency_async(self, value: Optional[int]) -> None:
        await self._set_async("global_concurrency", value)

    def set_worker_concurrency(self, value: Optional[int]) -> None:
        """Change the limit on running workflows in each process (None: no limit)."""
        self._set_sync("worker_concurrency", value)

    async def set_worker_concurrency_async(self, value: Optional[int]) -> None:
        await self._set_async("worker_concurrency", value)

    def set_limiter(self, value: Optional[QueueRateLimit]) -> None:
        """Change the queue's rate limit (None: none)."""
        self._set_sync("limiter", value)

    async def set_limiter_async(self, value: Optional[QueueRateLimit]) -> None:
        await self._set_async("limiter", value)

    def set_partition_concurrency(self, value: Optional[int]) -> None:
        """Change the limit on running workflows of one partition key, across all processes."""
        self._set_sync("partition_concurrency", value)

    async def set_partition_concurrency_async(self, value: Optional[int]) -> None:
        await self._set_async("partition_concurrency", value)

    def set_partition_worker_concurrency(self, value: Optional[int]) -> None:
        """Change the limit on running workflows of one partition key in each process."""
        self._set_sync("partition_worker_concurrency", value)

    async def set_partition_worker_concurrency_async(self, value: Optional[int]) -> None:
        await self._set_async("partition_worker_concurrency", value)

    def set_partition_limiter(self, value: Optional[QueueRateLimit]) -> None:
        """Change the rate limit applied to each partition key."""
        self._set_sync("partition_limiter", value)

    async def set_partition_limiter_async(self, value: Optional[QueueRateLimit]) -> None:
        await self._set_async("partition_limiter", value)

    def set_priority_enabled(self, value: bool) -> None:
        """Deprecated: priority is always honoured."""
        self._set_sync("priority_enabled", value)

    async def set_priority_enabled_async(self, value: bool) -> None:
        await self._set_async("priority_enabled", value)

    def set_partition_queue(self, value: bool) -> None:
        """Deprecated: use the partition_* setters."""
        self._set_sync("partition_queue", value)

    async def set_partition_queue_async(self, value: bool) -> None:
        await self._set_async("partition_queue", value)

    def set_polling_interval_sec(self, value: float) -> None:
        """Change how often each process's worker looks for work on this queue."""
        self._set_sync("polling_interval_sec", value)

    async def set_polling_interval_sec_async(self, value: float) -> None:
        await self._set_async("polling_interval_sec", value)
