"""``DBOSClient``: drive a DBOS application from another process.

The client talks only to the system database: it enqueues workflows by
name, sends messages, reads events, streams and results, and manages
workflows, without the application's code and without launching anything.
It may be made before any application has launched against the database:
its first call that needs the schema creates and migrates the database, as
a launch would (``client_handles.py``).
"""

from __future__ import annotations

import contextlib
from asyncio import to_thread
from typing import TYPE_CHECKING, Any, AsyncGenerator, Dict, Generator, List, Optional

from .._engine.context import take_next_workflow_id
from .._engine.handles import WorkflowHandle, WorkflowHandleAsync, distinct_ids, first_done
from .._engine.messages import SendMessage, message_row, message_rows, to_every_fork, wait_event
from .._engine.streams import check_polling_interval, check_read, fetch_entry, stream_values, value_at
from .._portable_json import WorkflowSerializationFormat
from .._queues.dedup import insert_enqueued
from .._serialization import Codec, DefaultSerializer, Serializer
from .._status import WorkflowStatus
from .._sysdb.records import ApplicationRowCounts, Message
from .._versions import VersionInfo
from ..error import DBOSException
from .client_enqueue import EnqueueOptions, check_same_workflow, enqueue_row, system_url
from .client_handles import DEFAULT_POLL_S, ClientHandle, ClientHandleAsync, ClientStorage
from .client_queues import QueueClientAPI
from .client_schedules import ScheduleClientAPI
from .client_transactions import TransactionClientAPI
from .filters import LIST_FILTERS, QUEUED_FILTERS, check_filters, with_filters
from .management import RENAME_BATCH_SIZE, StepInfo, check_rename, delay_until

if TYPE_CHECKING:
    import sqlalchemy  # optional: only its Engine's URL is read, never imported at run time

__all__ = ["DBOSClient", "EnqueueOptions"]

DEFAULT_POOL_SIZE = 5


class DBOSClient(QueueClientAPI, ScheduleClientAPI, TransactionClientAPI):
    """Enqueue, message and manage the workflows of an application by its system database.

    The database is ``system_database_url``; without it, the URL of
    ``system_database_engine`` (a SQLAlchemy Engine: only its URL is used,
    the engine itself is neither used nor disposed), else the one the
    application ``database_url`` implies (deprecated, as is
    ``application_database_url``).

    Made, the client checks only that the database server answers
    (``DBOSSystemDatabaseError`` if not), unless ``lazy``. A database not
    created yet, or an absent SQLite file, is fine: the first call that needs
    the schema creates and migrates it, as ``DBOS.launch()`` would, and
    raises ``DBOSMigrationRequiredError`` naming ``dbos migrate`` where this
    database role may not.

    ``use_listen_notify`` (PostgreSQL) wakes waits at once on other
    processes' writes, and cannot be combined with ``lazy``.
    ``application_name`` owns the workflows the client enqueues and scopes
    its listings. ``system_database_pool_size`` (default 5) bounds its
    connections. Accepted for compatibility, with these differences: each
    wait polls from its caller's thread, one read at a time, so
    ``system_database_polling_concurrency`` sets no further limit; an
    operation that loses its connection is retried once on a fresh one,
    whatever ``retry_connection_errors`` says.
    """

    def __init__(
        self,
        database_url: Optional[str] = None,
        *,
        system_database_url: Optional[str] = None,
        system_database_engine: Optional["sqlalchemy.Engine"] = None,
        application_database_url: Optional[str] = None,
        dbos_system_schema: Optional[str] = "dbos",
        serializer: Serializer = DefaultSerializer(),
        system_database_pool_size: Optional[int] = None,
        system_database_polling_concurrency: Optional[int] = None,
        use_listen_notify: bool = False,
        application_name: Optional[str] = None,
        lazy: bool = False,
        retry_connection_errors: bool = True,
    ) -> None:
        """A client of one system database (see the class for each argument)."""
        if lazy and use_listen_notify:
            raise DBOSException("DBOSClient: lazy=True cannot be combined with use_listen_notify=True: "
                                "the listener connects at once")
        url = system_url(database_url, system_database_url, application_database_url, system_database_engine)
        self.application_name = application_name
        self._storage = ClientStorage(url, schema=dbos_system_schema or "dbos", codec=Codec.of(serializer),
                                      pool_size=system_database_pool_size or DEFAULT_POOL_SIZE,
                                      application_name=application_name)
        self._open(lazy, use_listen_notify)

    def _open(self, lazy: bool, listen: bool) -> None:
        try:
            if not lazy:
                self._storage.check_connection()
            if listen:
                self._storage.listen()
        except BaseException:
            self._storage.close()
            raise

    def check_connection(self) -> None:
        """Raise ``DBOSSystemDatabaseError`` if the database server cannot be reached."""
        self._storage.check_connection()

    async def check_connection_async(self) -> None:
        """``check_connection`` for async code."""
        await to_thread(self._storage.check_connection)

    def destroy(self) -> None:
        """Stop listening and close the client's connections."""
        self._storage.close()

    # ------------------------------------------------------------------
    # Enqueueing, retrieving and waiting
    # ------------------------------------------------------------------

    def enqueue(self, options: EnqueueOptions, *args: Any, **kwargs: Any) -> WorkflowHandle[Any]:
        """Enqueue the workflow named in ``options``; a worker of the app runs it."""
        return ClientHandle(self._storage, self._enqueue(options, args, kwargs))

    async def enqueue_async(self, options: EnqueueOptions, *args: Any,
                            **kwargs: Any) -> WorkflowHandleAsync[Any]:
        """``enqueue`` for async code."""
        workflow_id = await to_thread(self._enqueue, options, args, kwargs)
        return ClientHandleAsync(self._storage, workflow_id)

    def _enqueue(self, options: EnqueueOptions, args: Any, kwargs: Dict[str, Any]) -> str:
        row = enqueue_row(self._storage.codec, self.application_name, options, args, kwargs)
        workflow_id, found = insert_enqueued(self._storage.ready(), row, None, options.get("duplication_policy"))
        check_same_workflow(row, found)
        return workflow_id

    def retrieve_workflow(self, workflow_id: str) -> WorkflowHandle[Any]:
        """A handle to an existing workflow (``DBOSNonExistentWorkflowError`` if none)."""
        self._storage.status(workflow_id)
        return ClientHandle(self._storage, workflow_id)

    async def retrieve_workflow_async(self, workflow_id: str) -> WorkflowHandleAsync[Any]:
        """``retrieve_workflow`` for async code."""
        await to_thread(self._storage.status, workflow_id)
        return ClientHandleAsync(self._storage, workflow_id)

    def get_workflow_status(self, workflow_id: str) -> Optional[WorkflowStatus]:
        """A workflow's status; None if there is no such workflow."""
        return self._storage.manage().get_workflow(workflow_id)

    def wait_first(self, handles: List[WorkflowHandle[Any]], *,
                   polling_interval_sec: float = DEFAULT_POLL_S) -> WorkflowHandle[Any]:
        """The first of ``handles`` whose workflow has finished (its result not
        fetched); ``ValueError`` for no handles or one workflow twice."""
        ids = distinct_ids(handles, "DBOSClient.wait_first()")
        return handles[ids.index(first_done(self._storage.waits(), ids, polling_interval_sec))]

    async def wait_first_async(self, handles: List[WorkflowHandleAsync[Any]], *,
                               polling_interval_sec: float = DEFAULT_POLL_S) -> WorkflowHandleAsync[Any]:
        """``wait_first`` for async code."""
        ids = distinct_ids(handles, "DBOSClient.wait_first_async()")
        winner = await to_thread(lambda: first_done(self._storage.waits(), ids, polling_interval_sec))
        return handles[ids.index(winner)]

    # ------------------------------------------------------------------
    # Messages and events
    # ------------------------------------------------------------------

    def send(self, destination_id: str, message: Any, topic: Optional[str] = None,
             idempotency_key: Optional[str] = None, *, serialization_type: Any = WorkflowSerializationFormat.DEFAULT,
             send_to_forks: bool = False) -> None:
        """Send ``message`` to a workflow's ``recv`` on ``topic`` (once per
        idempotency key; ``DBOSNonExistentWorkflowError`` for no such workflow).

        ``send_to_forks`` also sends it to every workflow forked from the
        destination, transitively, that exists when the forks are looked up
        (just before the one transaction that sends them all).
        ``serialization_type``: ``PORTABLE`` writes portable JSON, ``NATIVE``
        pickle; DEFAULT the client's serializer.
        """
        note = SendMessage(destination_id, message, topic, idempotency_key)
        self.send_bulk([note], serialization_type=serialization_type, send_to_forks=send_to_forks)

    async def send_async(self, destination_id: str, message: Any, topic: Optional[str] = None,
                         idempotency_key: Optional[str] = None, *, serialization_type: Any = WorkflowSerializationFormat.DEFAULT,
                         send_to_forks: bool = False) -> None:
        """``send`` for async code."""
        await to_thread(self.send, destination_id, message, topic, idempotency_key,
                        serialization_type=serialization_type, send_to_forks=send_to_forks)

    def send_bulk(self, messages: List[SendMessage], *, serialization_type: Any = WorkflowSerializationFormat.DEFAULT,
                  send_to_forks: bool = False) -> None:
        """Send several messages in one transaction: all are delivered or none
        (``serialization_type`` and ``send_to_forks`` as for ``send``)."""
        codec = self._storage.codec.for_type(serialization_type)
        self._storage.ready().send_messages(self._message_rows(codec, messages, send_to_forks))

    async def send_bulk_async(self, messages: List[SendMessage], *, serialization_type: Any = WorkflowSerializationFormat.DEFAULT,
                              send_to_forks: bool = False) -> None:
        """``send_bulk`` for async code."""
        await to_thread(self.send_bulk, messages, serialization_type=serialization_type,
                        send_to_forks=send_to_forks)

    def _message_rows(self, codec: Codec, messages: List[SendMessage], send_to_forks: bool) -> List[Message]:
        rows = message_rows(codec, messages)  # refuses an idempotency key given twice
        if not send_to_forks:
            return rows
        return [message_row(codec, m) for m in to_every_fork(self._storage.ready(), messages)]

    def get_event(self, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """The event's latest value, waiting up to ``timeout_seconds`` for it to
        be set; None if it is not."""
        return wait_event(self._storage.waits(), workflow_id, key, timeout_seconds)

    async def get_event_async(self, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """``get_event`` for async code."""
        return await to_thread(self.get_event, workflow_id, key, timeout_seconds)

    # ------------------------------------------------------------------
    # Streams
    # ------------------------------------------------------------------

    def read_stream(self, workflow_id: str, key: str, *, offset: int = 0,
                    polling_interval_sec: Optional[float] = None,
                    timeout_seconds: Optional[float] = None) -> Generator[Any, None, None]:
        """Values written to the stream from ``offset`` on, until it is closed or
        its workflow ends and every value was read; ``DBOSStreamTimeoutError``
        when ``timeout_seconds`` pass without the next value. Never checkpointed."""
        check_polling_interval(polling_interval_sec)
        waits = self._storage.waits(polling_interval_sec)
        check_read(waits.sysdb, workflow_id, timeout_seconds)
        yield from stream_values(
            lambda at: fetch_entry(waits, None, workflow_id, key, at, timeout_seconds), offset)

    async def read_stream_async(self, workflow_id: str, key: str, *, offset: int = 0,
                                polling_interval_sec: Optional[float] = None,
                                timeout_seconds: Optional[float] = None) -> AsyncGenerator[Any, None]:
        """``read_stream`` for async code."""
        values = self.read_stream(workflow_id, key, offset=offset, polling_interval_sec=polling_interval_sec,
                                  timeout_seconds=timeout_seconds)
        done = object()
        try:
            while True:
                value = await to_thread(next, values, done)
                if value is done:
                    return
                yield value
        finally:
            # Stop watching the stream now, not when collected; a read cancelled
            # while its thread still runs ends with that thread instead.
            with contextlib.suppress(ValueError):
                values.close()

    def read_stream_offset(self, workflow_id: str, key: str, offset: int, *,
                           polling_interval_sec: Optional[float] = None,
                           timeout_seconds: Optional[float] = None) -> Any:
        """The one value at ``offset`` of the stream, waiting for it to be written;
        ``DBOSStreamTimeoutError`` if ``timeout_seconds`` pass first or the
        stream ends before that offset. Never checkpointed."""
        check_polling_interval(polling_interval_sec)
        waits = self._storage.waits(polling_interval_sec)
        check_read(waits.sysdb, workflow_id, timeout_seconds)
        return value_at(fetch_entry(waits, None, workflow_id, key, offset, timeout_seconds), workflow_id, key)

    async def read_stream_offset_async(self, workflow_id: str, key: str, offset: int, *,
                                       polling_interval_sec: Optional[float] = None,
                                       timeout_seconds: Optional[float] = None) -> Any:
        """``read_stream_offset`` for async code."""
        return await to_thread(self.read_stream_offset, workflow_id, key, offset,
                               polling_interval_sec=polling_interval_sec, timeout_seconds=timeout_seconds)

    # ------------------------------------------------------------------
    # Listing
    # ------------------------------------------------------------------

    @with_filters(LIST_FILTERS)
    def list_workflows(self, **filters: Any) -> List[WorkflowStatus]:
        """Workflows matching every filter given (those of ``DBOS.list_workflows``); ``TypeError``
        for an unknown one."""
        checked = check_filters("list_workflows()", filters, LIST_FILTERS)
        return self._storage.manage().list_workflows(checked)

    @with_filters(LIST_FILTERS)
    async def list_workflows_async(self, **filters: Any) -> List[WorkflowStatus]:
        """``list_workflows`` for async code."""
        checked = check_filters("list_workflows_async()", filters, LIST_FILTERS)
        return await to_thread(lambda: self._storage.manage().list_workflows(checked))

    @with_filters(QUEUED_FILTERS)
    def list_queued_workflows(self, **filters: Any) -> List[WorkflowStatus]:
        """Workflows waiting in, or running from, a queue."""
        checked = check_filters("list_queued_workflows()", filters, QUEUED_FILTERS)
        return self._storage.manage().list_queued_workflows(checked)

    @with_filters(QUEUED_FILTERS)
    async def list_queued_workflows_async(self, **filters: Any) -> List[WorkflowStatus]:
        """``list_queued_workflows`` for async code."""
        checked = check_filters("list_queued_workflows_async()", filters, QUEUED_FILTERS)
        return await to_thread(lambda: self._storage.manage().list_queued_workflows(checked))

    def list_workflow_steps(self, workflow_id: str, *, load_output: bool = True,
                            limit: Optional[int] = None, offset: Optional[int] = None) -> List[StepInfo]:
        """The operations the workflow recorded, in order (from ``offset``, at most ``limit``)."""
        return self._storage.manage().list_workflow_steps(workflow_id, load_output, limit, offset)

    async def list_workflow_steps_async(self, workflow_id: str, *, load_output: bool = True,
                                        limit: Optional[int] = None,
                                        offset: Optional[int] = None) -> List[StepInfo]:
        """``list_workflow_steps`` for async code."""
        return await to_thread(self.list_workflow_steps, workflow_id, load_output=load_output,
                               limit=limit, offset=offset)

    # ------------------------------------------------------------------
    # Cancel, resume, fork, delete
    # ------------------------------------------------------------------

    def cancel_workflow(self, workflow_id: str, *, cancel_children: bool = False) -> None:
        """Cancel a workflow (with ``cancel_children``, its descendants too): it stops at its next
        DBOS call."""
        self.cancel_workflows([workflow_id], cancel_children=cancel_children)

    async def cancel_workflow_async(self, workflow_id: str, *, cancel_children: bool = False) -> None:
        """``cancel_workflow`` for async code."""
        await to_thread(self.cancel_workflows, [workflow_id], cancel_children=cancel_children)

    def cancel_workflows(self, workflow_ids: List[str], *, cancel_children: bool = False) -> None:
        """``cancel_workflow`` for several workflows."""
        self._storage.manage().cancel(workflow_ids, cancel_children)

    async def cancel_workflows_async(self, workflow_ids: List[str], *,
                                     cancel_children: bool = False) -> None:
        """``cancel_workflows`` for async code."""
        await to_thread(self.cancel_workflows, workflow_ids, cancel_children=cancel_children)

    def resume_workflow(self, workflow_id: str, *, queue_name: Optional[str] = None) -> WorkflowHandle[Any]:
        """Resume a workflow from its last step, on ``queue_name`` (default: the internal queue);
        ``DBOSNonExistentWorkflowError`` if there is none."""
        return self.resume_workflows([workflow_id], queue_name=queue_name)[0]

    async def resume_workflow_async(self, workflow_id: str, *,
                                    queue_name: Optional[str] = None) -> WorkflowHandleAsync[Any]:
        """``resume_workflow`` for async code."""
        return (await self.resume_workflows_async([workflow_id], queue_name=queue_name))[0]

    def resume_workflows(self, workflow_ids: List[str], *,
                         queue_name: Optional[str] = None) -> List[WorkflowHandle[Any]]:
        """``resume_workflow`` for several workflows."""
        self._storage.manage().resume(workflow_ids, queue_name)
        return [ClientHandle(self._storage, w) for w in workflow_ids]

    async def resume_workflows_async(self, workflow_ids: List[str], *,
                                     queue_name: Optional[str] = None) -> List[WorkflowHandleAsync[Any]]:
        """``resume_workflows`` for async code."""
        await to_thread(lambda: self._storage.manage().resume(workflow_ids, queue_name))
        return [ClientHandleAsync(self._storage, w) for w in workflow_ids]

    def fork_workflow(self, workflow_id: str, start_step: int, *,
                      application_version: Optional[str] = None, queue_name: Optional[str] = None,
                      queue_partition_key: Optional[str] = None,
                      replacement_children: Optional[Dict[str, str]] = None,
                      timeout_seconds: Optional[float] = None) -> WorkflowHandle[Any]:
        """A new workflow that keeps the original's steps before ``start_step``.

        Its ID is the one ``SetWorkflowID`` chose, if any, else a new UUID.
        """
        forked = self._storage.manage().fork(
            workflow_id, start_step, new_workflow_id=take_next_workflow_id(),
            application_version=application_version, queue_name=queue_name,
            queue_partition_key=queue_partition_key, replacement_children=replacement_children,
            timeout_seconds=timeout_seconds)
        return ClientHandle(self._storage, forked)

    async def fork_workflow_async(self, workflow_id: str, start_step: int, *,
                                  application_version: Optional[str] = None, queue_name: Optional[str] = None,
                                  queue_partition_key: Optional[str] = None,
                                  replacement_children: Optional[Dict[str, str]] = None,
                                  timeout_seconds: Optional[float] = None) -> WorkflowHandleAsync[Any]:
        """``fork_workflow`` for async code."""
        handle = await to_thread(
            self.fork_workflow, workflow_id, start_step, application_version=application_version,
            queue_name=queue_name, queue_partition_key=queue_partition_key,
            replacement_children=replacement_children, timeout_seconds=timeout_seconds)
        return ClientHandleAsync(self._storage, handle.workflow_id)

    def delete_workflow(self, workflow_id: str, *, delete_children: bool = False) -> None:
        """Delete a workflow and all it recorded in the system database."""
        self.delete_workflows([workflow_id], delete_children=delete_children)

    async def delete_workflow_async(self, workflow_id: str, *, delete_children: bool = False) -> None:
        """``delete_workflow`` for async code."""
        await to_thread(self.delete_workflows, [workflow_id], delete_children=delete_children)

    def delete_workflows(self, workflow_ids: List[str], *, delete_children: bool = False) -> None:
        """``delete_workflow`` for several workflows."""
        self._storage.manage().delete(workflow_ids, delete_children)

    async def delete_workflows_async(self, workflow_ids: List[str], *,
                                     delete_children: bool = False) -> None:
        """``delete_workflows`` for async code."""
        await to_thread(self.delete_workflows, workflow_ids, delete_children=delete_children)

    def update_workflow_attributes(self, workflow_id: str, attributes: Optional[Dict[str, Any]]) -> None:
        """Replace a workflow's attributes (not merged; None clears them)."""
        self._storage.manage().update_attributes(workflow_id, attributes)

    async def update_workflow_attributes_async(self, workflow_id: str,
                                               attributes: Optional[Dict[str, Any]]) -> None:
        """``update_workflow_attributes`` for async code."""
        await to_thread(self.update_workflow_attributes, workflow_id, attributes)

    def set_workflow_delay(self, workflow_id: str, *, delay_seconds: Optional[float] = None,
                           delay_until_epoch_ms: Optional[int] = None) -> None:
        """Make a DELAYED workflow due ``delay_seconds`` from now, or at ``delay_until_epoch_ms``."""
        due = delay_until(delay_seconds, delay_until_epoch_ms)  # checked before the schema is made
        self._storage.manage().set_delay(workflow_id, delay_until_epoch_ms=due)

    async def set_workflow_delay_async(self, workflow_id: str, *, delay_seconds: Optional[float] = None,
                                       delay_until_epoch_ms: Optional[int] = None) -> None:
        """``set_workflow_delay`` for async code."""
        await to_thread(lambda: self.set_workflow_delay(workflow_id, delay_seconds=delay_seconds,
                                                        delay_until_epoch_ms=delay_until_epoch_ms))

    # ------------------------------------------------------------------
    # Application versions
    # ------------------------------------------------------------------

    def list_application_versions(self) -> List[VersionInfo]:
        """Registered application versions, newest first."""
        return self._storage.ready().list_application_versions()

    async def list_application_versions_async(self) -> List[VersionInfo]:
        """``list_application_versions`` for async code."""
        return await to_thread(self.list_application_versions)

    def get_latest_application_version(self) -> VersionInfo:
        """The latest registered application version (``DBOSException`` if none)."""
        return self._storage.manage().latest_application_version()

    async def get_latest_application_version_async(self) -> VersionInfo:
        """``get_latest_application_version`` for async code."""
        return await to_thread(self.get_latest_application_version)

    def set_latest_application_version(self, version_name: str, *,
                                       application_name: Optional[str] = None) -> None:
        """Make ``version_name`` the latest version: work enqueued for no particular
        version runs on it. Version names are unique across applications here,
        so ``application_name`` is accepted but changes nothing."""
        self._storage.ready().set_latest_application_version(version_name)

    async def set_latest_application_version_async(self, version_name: str, *,
                                                   application_name: Optional[str] = None) -> None:
        """``set_latest_application_version`` for async code."""
        await to_thread(self.set_latest_application_version, version_name, application_name=application_name)

    # ------------------------------------------------------------------
    # Application ownership
    # ------------------------------------------------------------------

    def rename_application(self, old_name: Optional[str], new_name: str, *,
                           batch_size: Optional[int] = RENAME_BATCH_SIZE,
                           adopt_unclaimed_rows: bool = False) -> ApplicationRowCounts:
        """Give application ``new_name`` the rows ``old_name`` owns and, with
        ``adopt_unclaimed_rows``, those no application owns (``old_name`` None: only those).

        Queues, versions and active workflows move in one transaction; finished
        workflows and their steps then follow ``batch_size`` workflows at a time
        (None: all in that one transaction). Stop the application first: its
        processes would otherwise race the move. Returns the rows moved, by
        kind; ``DBOSInvalidArgumentError``, with nothing written, for an invalid
        ``new_name``, ``new_name == old_name``, no source or a bad ``batch_size``.
        """
        check_rename(old_name, new_name, batch_size, adopt_unclaimed_rows)  # before the schema is made
        return self._storage.manage().rename_application(
            old_name, new_name, batch_size=batch_size, adopt_unclaimed_rows=adopt_unclaimed_rows)

    async def rename_application_async(self, old_name: Optional[str], new_name: str, *,
                                       batch_size: Optional[int] = RENAME_BATCH_SIZE,
                                       adopt_unclaimed_rows: bool = False) -> ApplicationRowCounts:
        """``rename_application`` for async code."""
        return await to_thread(self.rename_application, old_name, new_name, batch_size=batch_size,
                               adopt_unclaimed_rows=adopt_unclaimed_rows)
