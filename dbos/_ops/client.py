"""``DBOSClient``: drive a DBOS application from another process.

The client talks only to the system database: it enqueues workflows by
name, sends messages, reads events and results, and manages workflows,
without the application's code and without launching anything. It never
creates or migrates the database; ``dbos migrate`` or the application does.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import threading
import time
import uuid
from typing import Any, Callable, Dict, Generator, List, Optional, Sequence, TypedDict, TypeVar

from .._clock import now_ms
from .._config import DBOSConfig, resolve_urls
from .._engine.context import take_next_workflow_id
from .._engine.handles import WorkflowHandle, WorkflowHandleAsync
from .._engine.messages import SendMessage, message_row
from .._engine.streams import END, stream_entry
from .._engine.waiters import Waiters
from .._engine.workflow import decode_outcome
from .._queues.queue import MAX_PRIORITY
from .._serialization import Codec, DefaultSerializer, Serializer
from .._status import ACTIVE_STATUSES, WorkflowStatus
from .._sysdb import SystemDatabase
from .._sysdb.notifications import event_key, stream_key
from .._sysdb.records import Outcome
from ..error import DBOSConflictingWorkflowError, DBOSException, DBOSNonExistentWorkflowError
from .filters import LIST_FILTERS, QUEUED_FILTERS, check_filters
from .management import Management, StepInfo

R = TypeVar("R")
T = TypeVar("T")

# Waits without a listener poll, quickly at first (a result often comes
# soon), then every ``MAX_POLL_S``.
FIRST_POLL_S = 0.005
MAX_POLL_S = 1.0


class EnqueueOptions(TypedDict, total=False):
    """What ``DBOSClient.enqueue`` starts: ``workflow_name`` and ``queue_name`` are required."""

    workflow_name: str
    queue_name: str
    workflow_id: str
    app_version: str
    workflow_timeout: float
    delay_seconds: float
    deduplication_id: str
    priority: int
    max_recovery_attempts: int
    queue_partition_key: str
    authenticated_user: str
    authenticated_roles: List[str]
    class_name: str
    instance_name: str
    attributes: Dict[str, Any]
    application_name: str


class ClientHandle(WorkflowHandle[R]):
    """A workflow handle that polls the system database through a client."""

    def __init__(self, client: "DBOSClient", workflow_id: str) -> None:
        super().__init__(workflow_id)
        self._client = client

    def get_result(self, *, polling_interval_sec: float = MAX_POLL_S) -> R:
        result: R = self._client._result(self.workflow_id, polling_interval_sec)
        return result

    def get_status(self) -> WorkflowStatus:
        return self._client._management.require(self.workflow_id)


class ClientHandleAsync(WorkflowHandleAsync[R]):
    """``ClientHandle`` for async code: the same waits, on a worker thread."""

    def __init__(self, client: "DBOSClient", workflow_id: str) -> None:
        super().__init__(workflow_id)
        self._client = client

    async def get_result(self, *, polling_interval_sec: float = MAX_POLL_S) -> R:
        result: R = await _in_thread(self._client._result, self.workflow_id, polling_interval_sec)
        return result

    async def get_status(self) -> WorkflowStatus:
        return await _in_thread(self._client._management.require, self.workflow_id)


async def _in_thread(func: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(func, *args))


class DBOSClient:
    """Enqueue, message and manage the workflows of an application by its system database."""

    def __init__(
        self,
        database_url: Optional[str] = None,
        *,
        system_database_url: Optional[str] = None,
        application_database_url: Optional[str] = None,
        dbos_system_schema: Optional[str] = "dbos",
        serializer: Serializer = DefaultSerializer(),
        system_database_pool_size: Optional[int] = None,
        use_listen_notify: bool = False,
        application_name: Optional[str] = None,
        lazy: bool = False,
        **_ignored: Any,
    ) -> None:
        """A client of the system database at ``system_database_url`` (or the one the application
        database URL implies); ``DBOSMigrationRequiredError`` if it is not migrated, unless ``lazy``."""
        if lazy and use_listen_notify:
            raise DBOSException("DBOSClient: lazy=True cannot be combined with use_listen_notify=True")
        url = _system_url(database_url, system_database_url, application_database_url)
        self._sysdb = SystemDatabase(url, schema=dbos_system_schema or "dbos",
                                     pool_size=system_database_pool_size or 5)
        self._codec = Codec(serializer)
        self.application_name = application_name
        self._management = Management(self._sysdb, self._codec, application_name)
        self._waiters = Waiters()
        self._listener = None
        try:
            if not lazy:
                self.check_connection()
            if use_listen_notify:
                self._listener = self._sysdb.listen(self._waiters.wake)
        except BaseException:
            self._sysdb.close()
            raise

    def check_connection(self) -> None:
        """Raise if the system database cannot be reached or was never migrated."""
        self._sysdb.verify_schema("dbos migrate")

    def destroy(self) -> None:
        """Stop listening and close the connections."""
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        self._sysdb.close()

    # ------------------------------------------------------------------
    # Waiting
    # ------------------------------------------------------------------

    def _wait(self, keys: Sequence[str], check: Callable[[], Optional[T]],
              deadline: Optional[float], interval: float = MAX_POLL_S) -> Optional[T]:
        """``check()`` until it finds something or ``deadline`` (monotonic) passes."""
        event, pause = threading.Event(), FIRST_POLL_S
        for key in keys:
            self._waiters.register(key, event)
        try:
            while True:
                found = check()
                if found is not None:
                    return found
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                event.wait(pause if remaining is None else min(pause, remaining))
                event.clear()
                pause = min(pause * 2, interval)
        finally:
            for key in keys:
                self._waiters.unregister(key, event)

    def _result(self, workflow_id: str, interval: float) -> Any:
        def finished() -> Optional[Outcome]:
            outcome = self._sysdb.workflow_outcome(workflow_id)
            if outcome is None:
                raise DBOSNonExistentWorkflowError("workflow", workflow_id)
            return outcome if outcome.status not in ACTIVE_STATUSES else None

        outcome = self._wait([workflow_id], finished, None, interval)
        assert outcome is not None
        return decode_outcome(self._codec, workflow_id, outcome)

    # ------------------------------------------------------------------
    # Enqueueing and retrieving
    # ------------------------------------------------------------------

    def enqueue(self, options: EnqueueOptions, *args: Any, **kwargs: Any) -> WorkflowHandle[Any]:
        """Enqueue the workflow named in ``options``; a worker of the app runs it."""
        return ClientHandle(self, self._enqueue(options, args, kwargs))

    async def enqueue_async(self, options: EnqueueOptions, *args: Any,
                            **kwargs: Any) -> WorkflowHandleAsync[Any]:
        """``enqueue`` for async code."""
        workflow_id = await _in_thread(self._enqueue, options, args, kwargs)
        return ClientHandleAsync(self, workflow_id)

    def _enqueue(self, options: EnqueueOptions, args: Any, kwargs: Dict[str, Any]) -> str:
        row = self._enqueue_row(options, args, kwargs)
        found = self._sysdb.start_workflow(row)
        if not found.created and (found.name, found.class_name, found.config_name) != (
                row["name"], row["class_name"], row["config_name"]):
            raise DBOSConflictingWorkflowError(
                row["workflow_uuid"], f"workflow {row['workflow_uuid']} exists and runs "
                f"{found.name}, not {row['name']}")
        return str(row["workflow_uuid"])

    def _enqueue_row(self, options: EnqueueOptions, args: Any, kwargs: Dict[str, Any]) -> Dict[str, Any]:
        _validate(options)
        name, stamp = options["workflow_name"], now_ms()
        delay = options.get("delay_seconds")
        timeout = options.get("workflow_timeout")
        roles = options.get("authenticated_roles")
        attributes = options.get("attributes")
        return {
            "workflow_uuid": options.get("workflow_id") or str(uuid.uuid4()),
            "status": "DELAYED" if delay else "ENQUEUED",
            "name": name,
            "class_name": options.get("class_name"),
            "config_name": options.get("instance_name"),
            "queue_name": options["queue_name"],
            "inputs": self._codec.dump_inputs(tuple(args), kwargs, workflow_name=name),
            "authenticated_user": options.get("authenticated_user"),
            "authenticated_roles": json.dumps(roles) if roles is not None else None,
            "application_version": options.get("app_version"),
            "application_name": options.get("application_name") or self.application_name,
            "created_at": stamp,
            "updated_at": stamp,
            "priority": options.get("priority") or 0,
            "deduplication_id": options.get("deduplication_id"),
            "queue_partition_key": options.get("queue_partition_key"),
            "delay_until_epoch_ms": stamp + int(delay * 1000) if delay else None,
            "workflow_timeout_ms": int(timeout * 1000) if timeout is not None else None,
            "attributes": json.dumps(attributes) if attributes is not None else None,
            "recovery_attempts": 0,
            "owner_xid": uuid.uuid4().hex,
        }

    def retrieve_workflow(self, workflow_id: str) -> WorkflowHandle[Any]:
        """A handle to an existing workflow (``DBOSNonExistentWorkflowError`` if none)."""
        self._management.require(workflow_id)
        return ClientHandle(self, workflow_id)

    async def retrieve_workflow_async(self, workflow_id: str) -> WorkflowHandleAsync[Any]:
        """``retrieve_workflow`` for async code."""
        await _in_thread(self._management.require, workflow_id)
        return ClientHandleAsync(self, workflow_id)

    def get_workflow_status(self, workflow_id: str) -> Optional[WorkflowStatus]:
        """A workflow's status; None if there is no such workflow."""
        return self._management.get_workflow(workflow_id)

    # ------------------------------------------------------------------
    # Messages, events, streams
    # ------------------------------------------------------------------

    def send(self, destination_id: str, message: Any, topic: Optional[str] = None,
             idempotency_key: Optional[str] = None) -> None:
        """Send ``message`` to a workflow's ``recv`` (once per idempotency key)."""
        self.send_bulk([SendMessage(destination_id, message, topic, idempotency_key)])

    async def send_async(self, destination_id: str, message: Any, topic: Optional[str] = None,
                         idempotency_key: Optional[str] = None) -> None:
        """``send`` for async code."""
        await _in_thread(self.send, destination_id, message, topic, idempotency_key)

    def send_bulk(self, messages: List[SendMessage]) -> None:
        """Send several messages in one transaction: all are delivered or none."""
        self._sysdb.send_messages([message_row(self._codec, m) for m in messages])

    def get_event(self, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """The event's latest value, waiting up to ``timeout_seconds`` for it to be set."""
        found = self._wait([event_key(workflow_id, key)],
                           lambda: self._sysdb.get_event(workflow_id, key),
                           time.monotonic() + timeout_seconds)
        return self._codec.load_value(found[0]) if found else None

    async def get_event_async(self, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """``get_event`` for async code."""
        return await _in_thread(self.get_event, workflow_id, key, timeout_seconds)

    def read_stream(self, workflow_id: str, key: str, *, offset: int = 0,
                    timeout_seconds: Optional[float] = None) -> Generator[Any, None, None]:
        """Values written to the stream from ``offset`` on, until it closes or its
        workflow ends."""
        if self._sysdb.workflow_outcome(workflow_id) is None:
            raise DBOSNonExistentWorkflowError("workflow", workflow_id)
        while True:
            deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
            look = functools.partial(stream_entry, self._sysdb, self._codec, workflow_id, key, offset)
            entry = self._wait([stream_key(workflow_id, key), workflow_id], look, deadline)
            if entry is None or entry == END:
                return
            yield entry[1]
            offset += 1

    # ------------------------------------------------------------------
    # Management
    # ------------------------------------------------------------------

    def list_workflows(self, **filters: Any) -> List[WorkflowStatus]:
        """Workflows matching every filter given (those of ``DBOS.list_workflows``); ``TypeError``
        for an unknown one."""
        return self._management.list_workflows(check_filters("list_workflows()", filters, LIST_FILTERS))

    async def list_workflows_async(self, **filters: Any) -> List[WorkflowStatus]:
        """``list_workflows`` for async code."""
        checked = check_filters("list_workflows_async()", filters, LIST_FILTERS)
        return await _in_thread(self._management.list_workflows, checked)

    def list_queued_workflows(self, **filters: Any) -> List[WorkflowStatus]:
        """Workflows waiting in, or running from, a queue."""
        return self._management.list_queued_workflows(
            check_filters("list_queued_workflows()", filters, QUEUED_FILTERS))

    async def list_queued_workflows_async(self, **filters: Any) -> List[WorkflowStatus]:
        """``list_queued_workflows`` for async code."""
        checked = check_filters("list_queued_workflows_async()", filters, QUEUED_FILTERS)
        return await _in_thread(self._management.list_queued_workflows, checked)

    def list_workflow_steps(self, workflow_id: str, *, load_output: bool = True,
                            limit: Optional[int] = None, offset: Optional[int] = None) -> List[StepInfo]:
        """Every operation the workflow recorded, in order."""
        return self._management.list_workflow_steps(workflow_id, load_output, limit, offset)

    async def list_workflow_steps_async(self, workflow_id: str, *, load_output: bool = True,
                                        limit: Optional[int] = None,
                                        offset: Optional[int] = None) -> List[StepInfo]:
        """``list_workflow_steps`` for async code."""
        return await _in_thread(self._management.list_workflow_steps, workflow_id, load_output, limit, offset)

    def cancel_workflow(self, workflow_id: str, *, cancel_children: bool = False) -> None:
        """Cancel a workflow (with ``cancel_children``, its descendants too): it stops at its next
        DBOS call."""
        self._management.cancel([workflow_id], cancel_children)

    async def cancel_workflow_async(self, workflow_id: str, *, cancel_children: bool = False) -> None:
        """``cancel_workflow`` for async code."""
        await _in_thread(self._management.cancel, [workflow_id], cancel_children)

    def cancel_workflows(self, workflow_ids: List[str], *, cancel_children: bool = False) -> None:
        """``cancel_workflow`` for several workflows."""
        self._management.cancel(workflow_ids, cancel_children)

    async def cancel_workflows_async(self, workflow_ids: List[str], *,
                                     cancel_children: bool = False) -> None:
        """``cancel_workflows`` for async code."""
        await _in_thread(self._management.cancel, workflow_ids, cancel_children)

    def resume_workflow(self, workflow_id: str, *, queue_name: Optional[str] = None) -> WorkflowHandle[Any]:
        """Resume a workflow from its last step, on ``queue_name`` (default: the internal queue);
        ``DBOSNonExistentWorkflowError`` if there is none."""
        return self.resume_workflows([workflow_id], queue_name=queue_name)[0]

    async def resume_workflow_async(self, workflow_id: str, *,
                                    queue_name: Optional[str] = None) -> WorkflowHandleAsync[Any]:
        """``resume_workflow`` for async code."""
        await _in_thread(self._management.resume, [workflow_id], queue_name)
        return ClientHandleAsync(self, workflow_id)

    def resume_workflows(self, workflow_ids: List[str], *,
                         queue_name: Optional[str] = None) -> List[WorkflowHandle[Any]]:
        """``resume_workflow`` for several workflows."""
        self._management.resume(workflow_ids, queue_name)
        return [ClientHandle(self, w) for w in workflow_ids]

    def fork_workflow(self, workflow_id: str, start_step: int, *,
                      application_version: Optional[str] = None, queue_name: Optional[str] = None,
                      queue_partition_key: Optional[str] = None,
                      replacement_children: Optional[Dict[str, str]] = None,
                      timeout_seconds: Optional[float] = None) -> WorkflowHandle[Any]:
        """A new workflow that keeps the original's steps before ``start_step``.

        Its ID is the one ``SetWorkflowID`` chose, if any, else a new UUID.
        """
        forked = self._management.fork(
            workflow_id, start_step, new_workflow_id=take_next_workflow_id(),
            application_version=application_version, queue_name=queue_name,
            queue_partition_key=queue_partition_key, replacement_children=replacement_children,
            timeout_seconds=timeout_seconds)
        return ClientHandle(self, forked)

    async def fork_workflow_async(self, workflow_id: str, start_step: int,
                                  **options: Any) -> WorkflowHandleAsync[Any]:
        """``fork_workflow`` for async code."""
        handle = await _in_thread(functools.partial(self.fork_workflow, workflow_id, start_step, **options))
        return ClientHandleAsync(self, handle.workflow_id)

    def delete_workflow(self, workflow_id: str, *, delete_children: bool = False) -> None:
        """Delete a workflow and all it recorded in the system database."""
        self._management.delete([workflow_id], delete_children)

    async def delete_workflow_async(self, workflow_id: str, *, delete_children: bool = False) -> None:
        """``delete_workflow`` for async code."""
        await _in_thread(self._management.delete, [workflow_id], delete_children)

    def delete_workflows(self, workflow_ids: List[str], *, delete_children: bool = False) -> None:
        """``delete_workflow`` for several workflows."""
        self._management.delete(workflow_ids, delete_children)

    async def delete_workflows_async(self, workflow_ids: List[str], *,
                                     delete_children: bool = False) -> None:
        """``delete_workflows`` for async code."""
        await _in_thread(self._management.delete, workflow_ids, delete_children)


def _system_url(database_url: Optional[str], system_url: Optional[str], app_url: Optional[str]) -> str:
    if system_url is None and database_url is None and app_url is None:
        raise DBOSException("DBOSClient needs system_database_url (or an application database_url)")
    config = DBOSConfig(name="dbos-client")
    if system_url:
        config["system_database_url"] = system_url
    if database_url or app_url:
        config["application_database_url"] = str(database_url or app_url)
    return resolve_urls(config)[0].render()


def _validate(options: EnqueueOptions) -> None:
    for key in ("workflow_name", "queue_name"):
        value = options.get(key)
        if not isinstance(value, str) or not value:
            raise DBOSException(f"EnqueueOptions needs {key} as a non-empty string, got {value!r}")
    workflow_id = options.get("workflow_id")
    if workflow_id is not None and (not isinstance(workflow_id, str) or not workflow_id.strip()):
        raise DBOSException(f"EnqueueOptions workflow_id must be a non-empty string, got {workflow_id!r}")
    priority = options.get("priority")
    if priority is not None and not (isinstance(priority, int) and 1 <= priority <= MAX_PRIORITY):
        raise DBOSException(f"EnqueueOptions priority must be an integer from 1 to {MAX_PRIORITY}, got {priority!r}")
    for key in ("delay_seconds", "workflow_timeout"):
        number = options.get(key)
        if number is not None and not (isinstance(number, (int, float)) and math.isfinite(number)
                                       and number >= (0 if key == "delay_seconds" else 1e-3)):
            raise DBOSException(f"EnqueueOptions {key} must be a positive number, got {number!r}")
