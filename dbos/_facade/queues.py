"""``DBOS``'s queues kept in the database, and enqueueing by queue or workflow name."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, List, Literal, Optional, Union

from .._engine.engine import get_engine
from .._engine.handles import WorkflowHandle, WorkflowHandleAsync
from .._ops import named_enqueue
from .._ops.client_enqueue import EnqueueOptions
from .._queues.queue import Queue, QueueRateLimit, queue_named, register_queue, registered_queue, registered_queues

OnConflict = Literal["update_if_latest_version", "always_update", "never_update"]


def _owners(application_name: Optional[Union[str, List[str]]]) -> Optional[List[str]]:
    if application_name is None:
        return None
    return [application_name] if isinstance(application_name, str) else list(application_name)


class QueueAPI:
    @classmethod
    def register_queue(
        cls, name: str, *, worker_concurrency: Optional[int] = None, global_concurrency: Optional[int] = None,
        partition_concurrency: Optional[int] = None, partition_worker_concurrency: Optional[int] = None,
        partition_limiter: Optional[QueueRateLimit] = None, limiter: Optional[QueueRateLimit] = None,
        polling_interval_sec: float = 1.0, on_conflict: OnConflict = "update_if_latest_version",
        concurrency: Optional[int] = None, priority_enabled: bool = False, partition_queue: bool = False,
    ) -> Queue:
        """Keep a queue in the database: every process serving it reads its limits
        from there on each poll, so a change applies without a restart.

        ``on_conflict`` for a queue registered already: "update_if_latest_version"
        replaces its limits only if this process runs the latest application
        version, "always_update" always, "never_update" never. A queue another
        application registered raises ``DBOSException``; invalid limits raise
        ``DBOSInvalidArgumentError`` (a ``ValueError``). Returns the queue as stored.
        """
        settings = dict(concurrency=concurrency, global_concurrency=global_concurrency,
                        worker_concurrency=worker_concurrency, limiter=limiter,
                        partition_concurrency=partition_concurrency,
                        partition_worker_concurrency=partition_worker_concurrency,
                        partition_limiter=partition_limiter, priority_enabled=priority_enabled,
                        partition_queue=partition_queue, polling_interval_sec=polling_interval_sec)
        return register_queue(get_engine("DBOS.register_queue()"), name, on_conflict, settings)

    @classmethod
    async def register_queue_async(
        cls, name: str, *, worker_concurrency: Optional[int] = None, global_concurrency: Optional[int] = None,
        partition_concurrency: Optional[int] = None, partition_worker_concurrency: Optional[int] = None,
        partition_limiter: Optional[QueueRateLimit] = None, limiter: Optional[QueueRateLimit] = None,
        polling_interval_sec: float = 1.0, on_conflict: OnConflict = "update_if_latest_version",
        concurrency: Optional[int] = None, priority_enabled: bool = False, partition_queue: bool = False,
    ) -> Queue:
        """``register_queue`` for async code."""
        return await asyncio.to_thread(
            cls.register_queue, name, worker_concurrency=worker_concurrency, global_concurrency=global_concurrency,
            partition_concurrency=partition_concurrency, partition_worker_concurrency=partition_worker_concurrency,
            partition_limiter=partition_limiter, limiter=limiter, polling_interval_sec=polling_interval_sec,
            on_conflict=on_conflict, concurrency=concurrency, priority_enabled=priority_enabled,
            partition_queue=partition_queue)

    @classmethod
    def retrieve_queue(cls, name: str) -> Optional[Queue]:
        """The queue registered in the database as ``name``; None if there is none."""
        return registered_queue(get_engine("DBOS.retrieve_queue()"), name)

    @classmethod
    async def retrieve_queue_async(cls, name: str) -> Optional[Queue]:
        """``retrieve_queue`` for async code."""
        return await asyncio.to_thread(cls.retrieve_queue, name)

    @classmethod
    def list_queues(cls, *, application_name: Optional[Union[str, List[str]]] = None) -> List[Queue]:
        """The queues registered in the database, by name: those of ``application_name``
        (a name or a list; default this application) and the unclaimed ones."""
        return registered_queues(get_engine("DBOS.list_queues()"), _owners(application_name))

    @classmethod
    async def list_queues_async(cls, *, application_name: Optional[Union[str, List[str]]] = None) -> List[Queue]:
        """``list_queues`` for async code."""
        return await asyncio.to_thread(lambda: cls.list_queues(application_name=application_name))

    @classmethod
    def delete_queue(cls, name: str) -> None:
        """Forget a queue registered in the database (nothing if there is none); its
        workers stop, and workflows still on it wait until it is registered again."""
        get_engine("DBOS.delete_queue()").sysdb.delete_queue(name)

    @classmethod
    async def delete_queue_async(cls, name: str) -> None:
        """``delete_queue`` for async code."""
        await asyncio.to_thread(cls.delete_queue, name)

    @classmethod
    def enqueue_workflow(cls, queue_name: str, func: Callable[..., Any], *args: Any,
                         **kwargs: Any) -> WorkflowHandle[Any]:
        """Enqueue ``func(*args, **kwargs)`` on the queue named ``queue_name``, which
        need not exist yet (the workflow waits until a queue of that name is served)."""
        get_engine("DBOS.enqueue_workflow()")
        return queue_named(queue_name).enqueue(func, *args, **kwargs)

    @classmethod
    async def enqueue_workflow_async(cls, queue_name: str, func: Callable[..., Any], *args: Any,
                                     **kwargs: Any) -> WorkflowHandleAsync[Any]:
        """``enqueue_workflow`` for async code."""
        get_engine("DBOS.enqueue_workflow_async()")
        return await queue_named(queue_name).enqueue_async(func, *args, **kwargs)

    @classmethod
    def enqueue_workflow_with_options(cls, options: EnqueueOptions, *args: Any,
                                      **kwargs: Any) -> WorkflowHandle[Any]:
        """Enqueue the workflow named in ``options`` (it may run in another
        application); options left unset come from ``SetWorkflowID``,
        ``SetEnqueueOptions`` and ``SetWorkflowTimeout``. In a workflow, a child."""
        engine = get_engine("DBOS.enqueue_workflow_with_options()")
        return WorkflowHandle(named_enqueue.enqueue_with_options(engine, options, args, kwargs))

    @classmethod
    async def enqueue_workflow_with_options_async(cls, options: EnqueueOptions, *args: Any,
                                                  **kwargs: Any) -> WorkflowHandleAsync[Any]:
        """``enqueue_workflow_with_options`` for async code."""
        engine = get_engine("DBOS.enqueue_workflow_with_options_async()")
        prepared = named_enqueue.prepare(engine, options, args, kwargs)
        return WorkflowHandleAsync(await engine.in_pool(named_enqueue.write, engine, prepared))
