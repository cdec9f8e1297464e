"""``DBOSClient``'s queues kept in the database: register, retrieve, list, delete.

The queues it returns are bound to the client: their properties read the
row and their setters change it through the client's system database, but
they cannot enqueue (``DBOSClient.enqueue`` does that).
"""

from __future__ import annotations

from asyncio import to_thread
from typing import TYPE_CHECKING, Any, Dict, List, Literal, Optional, Union

from .._queues.limits import check_name, check_on_conflict, registration, row_fields
from .._queues.queue import Queue, QueueRateLimit, queue_from_row
from ..error import DBOSException

if TYPE_CHECKING:
    from .client_handles import ClientStorage

ClientOnConflict = Literal["update_if_latest_version", "always_update", "never_update"]


class ClientQueueStore:
    """A client-bound queue's rows, read and written through the client's system database."""

    def __init__(self, storage: "ClientStorage") -> None:
        self._storage = storage

    def get_queue(self, name: str) -> Optional[Dict[str, Any]]:
        return self._storage.ready().get_queue(name)

    def update_queue(self, name: str, fields: Dict[str, Any]) -> bool:
        return self._storage.ready().update_queue(name, fields)


class QueueClientAPI:
    """The client's queue methods (a base of ``DBOSClient``)."""

    _storage: "ClientStorage"
    application_name: Optional[str]

    def register_queue(
        self, name: str, *, global_concurrency: Optional[int] = None, partition_concurrency: Optional[int] = None,
        partition_worker_concurrency: Optional[int] = None, partition_limiter: Optional[QueueRateLimit] = None,
        limiter: Optional[QueueRateLimit] = None, worker_concurrency: Optional[int] = None,
        polling_interval_sec: float = 1.0, on_conflict: ClientOnConflict = "always_update",
        application_name: Optional[str] = None, concurrency: Optional[int] = None,
        priority_enabled: bool = False, partition_queue: bool = False,
    ) -> Queue:
        """Keep a queue in the database (as ``DBOS.register_queue``), owned by
        ``application_name`` or the client's; "update_if_latest_version" is not
        for a client, which runs no version: ``DBOSException``."""
        check_name(name)
        if on_conflict == "update_if_latest_version":
            raise DBOSException("DBOSClient.register_queue: on_conflict='update_if_latest_version' needs an "
                                "application version, which a client has not; use 'always_update' or 'never_update'")
        check_on_conflict(on_conflict, ("always_update", "never_update"))
        config = registration(
            concurrency=concurrency, global_concurrency=global_concurrency, worker_concurrency=worker_concurrency,
            limiter=limiter, partition_concurrency=partition_concurrency,
            partition_worker_concurrency=partition_worker_concurrency, partition_limiter=partition_limiter,
            priority_enabled=priority_enabled, partition_queue=partition_queue,
            polling_interval_sec=polling_interval_sec)
        sysdb = self._storage.ready()
        sysdb.save_queue({"name": name, **row_fields(config)}, on_conflict == "always_update",
                         application_name or self.application_name)
        queue = self.retrieve_queue(name)
        if queue is None:
            raise DBOSException(f"Queue {name} was deleted while it was being registered")
        return queue

    async def register_queue_async(
        self, name: str, *, global_concurrency: Optional[int] = None, partition_concurrency: Optional[int] = None,
        partition_worker_concurrency: Optional[int] = None, partition_limiter: Optional[QueueRateLimit] = None,
        limiter: Optional[QueueRateLimit] = None, worker_concurrency: Optional[int] = None,
        polling_interval_sec: float = 1.0, on_conflict: ClientOnConflict = "always_update",
        application_name: Optional[str] = None, concurrency: Optional[int] = None,
        priority_enabled: bool = False, partition_queue: bool = False,
    ) -> Queue:
        """``register_queue`` for async code."""
        return await to_thread(
            self.register_queue, name, global_concurrency=global_concurrency,
            partition_concurrency=partition_concurrency, partition_worker_concurrency=partition_worker_concurrency,
            partition_limiter=partition_limiter, limiter=limiter, worker_concurrency=worker_concurrency,
            polling_interval_sec=polling_interval_sec, on_conflict=on_conflict, application_name=application_name,
            concurrency=concurrency, priority_enabled=priority_enabled, partition_queue=partition_queue)

    def retrieve_queue(self, name: str) -> Optional[Queue]:
        """The queue registered as ``name``, bound to this client; None if there is none."""
        row = self._storage.ready().get_queue(name)
        return queue_from_row(row, ClientQueueStore(self._storage)) if row is not None else None

    async def retrieve_queue_async(self, name: str) -> Optional[Queue]:
        """``retrieve_queue`` for async code."""
        return await to_thread(self.retrieve_queue, name)

    def delete_queue(self, name: str) -> None:
        """Forget a registered queue (nothing if there is none); its workers stop."""
        self._storage.ready().delete_queue(name)

    async def delete_queue_async(self, name: str) -> None:
        """``delete_queue`` for async code."""
        await to_thread(self.delete_queue, name)

    def list_queues(self, *, application_name: Optional[Union[str, List[str]]] = None) -> List[Queue]:
        """Registered queues by name: those of ``application_name`` (default the
        client's; a client without one sees every queue) and the unclaimed ones."""
        owners = application_name if application_name is not None else self.application_name
        names = None if owners is None else ([owners] if isinstance(owners, str) else list(owners))
        store = ClientQueueStore(self._storage)
        return [queue_from_row(row, store) for row in self._storage.ready().list_queues(names)]

    async def list_queues_async(self, *, application_name: Optional[Union[str, List[str]]] = None) -> List[Queue]:
        """``list_queues`` for async code."""
        return await to_thread(lambda: self.list_queues(application_name=application_name))
