"""``DBOS``'s queues kept in the database, and enqueueing by queue name."""

from __future__ import annotations

from typing import Any, Callable, List, Optional

from .._engine.engine import get_engine
from .._engine.handles import WorkflowHandle
from .._queues.queue import (
    Queue,
    QueueConfig,
    QueueRateLimit,
    enqueue,
    queue_named,
    register_queue,
    registered_queue,
    registered_queues,
)


class QueueAPI:
    @classmethod
    def register_queue(
        cls, name: str, *, concurrency: Optional[int] = None, worker_concurrency: Optional[int] = None,
        limiter: Optional[QueueRateLimit] = None, priority_enabled: bool = False,
        partition_queue: bool = False, polling_interval_sec: float = 1.0,
        on_conflict: str = "update_if_latest_version",
    ) -> Queue:
        """A queue kept in the database: every process reads its limits from there
        (``ValueError`` for invalid limits)."""
        engine = get_engine("DBOS.register_queue()")
        config = QueueConfig(concurrency, worker_concurrency, limiter, priority_enabled,
                             partition_queue, polling_interval_sec)
        return register_queue(engine, name, config, update=on_conflict != "never_update")

    @classmethod
    def retrieve_queue(cls, name: str) -> Optional[Queue]:
        """The queue registered in the database as ``name``; None if there is none."""
        return registered_queue(get_engine("DBOS.retrieve_queue()"), name)

    @classmethod
    def list_queues(cls) -> List[Queue]:
        """Every queue registered in the database, by name."""
        return registered_queues(get_engine("DBOS.list_queues()"))

    @classmethod
    def delete_queue(cls, name: str) -> None:
        """Forget a queue registered in the database; its workflows stay."""
        get_engine("DBOS.delete_queue()").sysdb.delete_queue(name)

    @classmethod
    def enqueue_workflow(cls, queue_name: str, func: Callable[..., Any], *args: Any,
                         **kwargs: Any) -> WorkflowHandle[Any]:
        """Enqueue by queue name; the queue need not be declared in this process."""
        engine = get_engine("DBOS.enqueue_workflow()")
        queue = queue_named(engine, queue_name)
        return WorkflowHandle(enqueue(engine, queue, func, args, kwargs).workflow_id)
