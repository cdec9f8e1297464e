"""``DebouncerClient``: the debouncer (``_queues/debouncer.py``) from outside the
application, by workflow name, through a ``DBOSClient``.

The same cycle as ``Debouncer``: bounce the DELAYED workflow holding the key,
else enqueue a fresh one with the client's ``enqueue`` row, marked debounced.
"""

from __future__ import annotations

from asyncio import to_thread
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple, Union, cast

from .._clock import now_ms
from .._engine.handles import WorkflowHandle, WorkflowHandleAsync
from .._queues.debouncer import (
    check_debounce,
    check_timeout,
    debounce_cycle,
    debounce_id,
    first_delay,
    refuse_options,
)
from .._queues.queue import Queue
from .._sysdb.records import Bounce, BounceRequest
from ..error import DBOSConflictingWorkflowError, DBOSInvalidArgumentError
from .client_enqueue import EnqueueOptions, enqueue_row
from .client_handles import ClientHandle, ClientHandleAsync, ClientStorage

if TYPE_CHECKING:
    from .client import DBOSClient


class DebouncerClient:
    """Debounce a workflow of an application from outside it: the calls with one
    key within a period run the workflow once, with the last call's arguments."""

    def __init__(self, client: "DBOSClient", workflow_options: EnqueueOptions, *,
                 debounce_timeout_sec: Optional[float] = None, queue: Optional[Union[Queue, str]] = None,
                 application_name: Optional[str] = None) -> None:
        """``workflow_options`` as for ``DBOSClient.enqueue``, without deduplication,
        delay, priority or partition key; ``queue`` (default: the options' queue)
        is where the debounced workflows wait and run."""
        check_timeout(debounce_timeout_sec)
        self.client = client
        self.workflow_options = workflow_options
        self.debounce_timeout_sec = debounce_timeout_sec
        self.queue_name = queue.name if isinstance(queue, Queue) else queue
        self.application_name = application_name

    def debounce(self, debounce_key: str, debounce_period_sec: float, *args: Any,
                 **kwargs: Any) -> WorkflowHandle[Any]:
        """Run the workflow ``debounce_period_sec`` after the last call with this key,
        with that call's arguments; a handle to the workflow that will run them."""
        return ClientHandle(self._storage, self._debounce(debounce_key, debounce_period_sec, args, kwargs))

    async def debounce_async(self, debounce_key: str, debounce_period_sec: float, *args: Any,
                             **kwargs: Any) -> WorkflowHandleAsync[Any]:
        """``debounce`` for async code."""
        workflow_id = await to_thread(self._debounce, debounce_key, debounce_period_sec, args, kwargs)
        return ClientHandleAsync(self._storage, workflow_id)

    @property
    def _storage(self) -> ClientStorage:
        return self.client._storage

    def _debounce(self, key: str, period: float, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> str:
        check_debounce(key, period)
        options = self.workflow_options
        refuse_options(options.get("deduplication_id"), options.get("delay_seconds"), options.get("priority"),
                       options.get("queue_partition_key"), options.get("duplication_policy"))
        name, queue_name = options.get("workflow_name"), self.queue_name or options.get("queue_name")
        for argument, value in (('workflow_options["workflow_name"]', name), ("queue", queue_name)):
            if not isinstance(value, str) or not value:
                raise DBOSInvalidArgumentError(argument, value, "name it with a non-empty string")
        assert isinstance(name, str) and isinstance(queue_name, str)
        codec = self._storage.codec.for_type(options.get("serialization_type"))  # as enqueue_row writes
        request = BounceRequest(
            workflow_name=name, queue_name=queue_name,
            deduplication_id=debounce_id(name, key), delay_until_ms=now_ms() + int(period * 1000),
            inputs=codec.dump_inputs(tuple(args), kwargs, workflow_name=name),
            app_version=options.get("app_version"),
            application_name=self.application_name or options.get("application_name")
            or self.client.application_name, serialization=codec.column)
        return debounce_cycle(lambda: self._bounce(request),
                              lambda: self._fresh(request, period, args, kwargs), request)

    def _bounce(self, request: BounceRequest) -> Bounce:
        return self._storage.ready().bounce_debounced(request)[0]

    def _fresh(self, request: BounceRequest, period: float, args: Tuple[Any, ...],
               kwargs: Dict[str, Any]) -> str:
        """Enqueue a new debounced workflow holding the key (refused if one holds it)."""
        options = cast(EnqueueOptions, {**self.workflow_options, "queue_name": request.queue_name,
                                        "deduplication_id": request.deduplication_id})
        if request.application_name:
            options["application_name"] = request.application_name
        row = enqueue_row(self._storage.codec, self.client.application_name, options, args, kwargs)
        due, deadline = first_delay(row["created_at"], period, self.debounce_timeout_sec)
        row.update(status="DELAYED", delay_until_epoch_ms=due, is_debounced=True,
                   debounce_deadline_epoch_ms=deadline)
        found = self._storage.ready().start_workflow(row)
        if not found.created and (found.name, found.class_name, found.config_name) != (
                row["name"], row["class_name"], row["config_name"]):
            raise DBOSConflictingWorkflowError(row["workflow_uuid"], f"workflow {row['workflow_uuid']} "
                                               f"exists and runs {found.name}, not {row['name']}")
        return str(row["workflow_uuid"])
