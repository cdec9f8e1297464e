"""``DBOSClient``'s writes inside the caller's own transaction: enqueue and send
on a connection (or SQLAlchemy session) of the system database that the
caller holds, so the workflow or message exists exactly when the caller's
own writes commit (an outbox). Nothing here commits, retries or waits: the
transaction is the caller's, and so is its failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional

from .._engine.handles import WorkflowHandle
from .._engine.messages import SendMessage, message_row, message_rows, to_every_fork
from .._portable_json import WorkflowSerializationFormat
from .._queues.dedup import insert_enqueued
from .._sysdb.records import Message
from ..error import DBOSException, DBOSNonExistentWorkflowError
from .client_enqueue import EnqueueOptions, check_same_workflow, enqueue_row

if TYPE_CHECKING:
    from .client_handles import ClientStorage


def dbapi_connection(conn_or_session: Any) -> Any:
    """The DB-API connection behind a SQLAlchemy ``Connection`` or ``Session``, or a
    DB-API connection itself; ``DBOSException`` for anything else."""
    if hasattr(conn_or_session, "exec_driver_sql"):  # a SQLAlchemy Connection
        proxied = conn_or_session.connection
    elif hasattr(conn_or_session, "get_bind"):  # a SQLAlchemy Session: its connection in this transaction
        proxied = conn_or_session.connection().connection
    elif callable(getattr(conn_or_session, "cursor", None)):
        return conn_or_session
    else:
        raise DBOSException(
            f"conn_or_session must be a SQLAlchemy Connection or Session, or a DB-API connection, "
            f"of the system database; got {type(conn_or_session).__name__}")
    return getattr(proxied, "dbapi_connection", proxied)


class TransactionClientAPI:
    """The client's ``*_in_transaction`` methods (a base of ``DBOSClient``)."""

    _storage: "ClientStorage"
    application_name: Optional[str]

    def enqueue_in_transaction(self, conn_or_session: Any, options: EnqueueOptions,
                               *args: Any, **kwargs: Any) -> WorkflowHandle[Any]:
        """``enqueue`` on the caller's connection or session of the system database:
        the workflow is enqueued when, and only if, the caller commits. A
        ``duplication_policy`` of "return-existing" is refused (``DBOSException``)."""
        if options.get("duplication_policy") == "return-existing":
            raise DBOSException('enqueue_in_transaction() cannot use duplication_policy "return-existing": '
                                "a collision aborts the caller's transaction; use \"reject\"")
        from .client_handles import ClientHandle

        row = enqueue_row(self._storage.codec, self.application_name, options, args, kwargs)
        sysdb = self._storage.ready()
        with sysdb.on_connection(dbapi_connection(conn_or_session)):
            workflow_id, found = insert_enqueued(sysdb, row, None, None)
        check_same_workflow(row, found)
        return ClientHandle(self._storage, workflow_id)

    def send_in_transaction(self, conn_or_session: Any, destination_id: str, message: Any,
                            topic: Optional[str] = None, idempotency_key: Optional[str] = None, *,
                            serialization_type: Any = WorkflowSerializationFormat.DEFAULT, send_to_forks: bool = False) -> None:
        """``send`` on the caller's connection or session of the system database:
        the message is delivered when, and only if, the caller commits."""
        note = SendMessage(destination_id, message, topic, idempotency_key)
        self.send_bulk_in_transaction(conn_or_session, [note], serialization_type=serialization_type,
                                      send_to_forks=send_to_forks)

    def send_bulk_in_transaction(self, conn_or_session: Any, messages: List[SendMessage], *,
                                 serialization_type: Any = WorkflowSerializationFormat.DEFAULT, send_to_forks: bool = False) -> None:
        """``send_bulk`` on the caller's connection or session of the system database."""
        codec, sysdb = self._storage.codec.for_type(serialization_type), self._storage.ready()
        rows = message_rows(codec, messages)  # refuses an idempotency key given twice
        with sysdb.on_connection(dbapi_connection(conn_or_session)):
            if send_to_forks:
                rows = [message_row(codec, m) for m in to_every_fork(sysdb, messages)]
            # Checked first: on PostgreSQL a failed insert would abort the caller's transaction.
            _check_destinations(sysdb.existing_workflows([r[0] for r in rows]), rows)
            sysdb.send_messages(rows)


def _check_destinations(found: List[str], rows: List[Message]) -> None:
    for destination in (row[0] for row in rows):
        if destination not in found:
            raise DBOSNonExistentWorkflowError("`send` destination", destination)
