"""``DBOS``'s messages, events, durable sleep and streams."""

from __future__ import annotations

from typing import Any, AsyncGenerator, Dict, Generator, List, Optional

from .._engine import messages as engine_messages
from .._engine import sleep, streams
from .._engine.engine import get_engine
from .._engine.messages import SendMessage
from .._portable_json import WorkflowSerializationFormat

Format = Optional[WorkflowSerializationFormat]
DEFAULT = WorkflowSerializationFormat.DEFAULT


class MessagingAPI:
    # ------------------------------------------------------------------
    # Messages
    # ------------------------------------------------------------------

    @classmethod
    def send(cls, destination_id: str, message: Any, topic: Optional[str] = None, *,
             idempotency_key: Optional[str] = None, serialization_type: Format = DEFAULT,
             send_to_forks: bool = False) -> None:
        """Send ``message`` to a workflow's ``recv`` on ``topic``; once per workflow
        step, or per idempotency key (``DBOSNonExistentWorkflowError`` for no such workflow).
        ``serialization_type`` DEFAULT: the sending workflow's format, else the configured one.
        ``send_to_forks`` also sends it to every workflow forked from the destination."""
        engine = get_engine("DBOS.send()")
        note = SendMessage(destination_id, message, topic, idempotency_key)
        engine_messages.send(engine, [note], engine_messages.SEND, send_to_forks, serialization_type)

    @classmethod
    async def send_async(cls, destination_id: str, message: Any, topic: Optional[str] = None, *,
                         idempotency_key: Optional[str] = None, serialization_type: Format = DEFAULT,
                         send_to_forks: bool = False) -> None:
        """``send`` for async code."""
        engine = get_engine("DBOS.send_async()")
        note = SendMessage(destination_id, message, topic, idempotency_key)
        await engine_messages.send_async(engine, [note], engine_messages.SEND, send_to_forks, serialization_type)

    @classmethod
    def send_bulk(cls, messages: List[SendMessage], *, serialization_type: Format = DEFAULT,
                  send_to_forks: bool = False) -> None:
        """Send several messages in one transaction: all are delivered or none."""
        engine = get_engine("DBOS.send_bulk()")
        engine_messages.send(engine, list(messages), engine_messages.SEND_BULK, send_to_forks, serialization_type)

    @classmethod
    async def send_bulk_async(cls, messages: List[SendMessage], *, serialization_type: Format = DEFAULT,
                              send_to_forks: bool = False) -> None:
        """``send_bulk`` for async code."""
        engine = get_engine("DBOS.send_bulk_async()")
        await engine_messages.send_async(engine, list(messages), engine_messages.SEND_BULK, send_to_forks,
                                         serialization_type)

    @classmethod
    def recv(cls, topic: Optional[str] = None, timeout_seconds: float = 60) -> Any:
        """The next message sent to this workflow on ``topic``, or None after the
        timeout; only in a workflow's own code (``DBOSException`` elsewhere)."""
        return engine_messages.recv(get_engine("DBOS.recv()"), topic, timeout_seconds)

    @classmethod
    async def recv_async(cls, topic: Optional[str] = None, timeout_seconds: float = 60) -> Any:
        """``recv`` for async code."""
        return await engine_messages.recv_async(get_engine("DBOS.recv_async()"), topic, timeout_seconds)

    # ------------------------------------------------------------------
    # Events
    # ------------------------------------------------------------------

    @classmethod
    def set_event(cls, key: str, value: Any, *,
                  serialization_type: Optional[WorkflowSerializationFormat] = WorkflowSerializationFormat.DEFAULT,
                  ) -> None:
        """Set an event of this workflow to ``value`` (``DBOSException`` outside a workflow);
        ``serialization_type`` DEFAULT: the workflow's format."""
        engine_messages.set_event(get_engine("DBOS.set_event()"), key, value, serialization_type)

    @classmethod
    async def set_event_async(
        cls, key: str, value: Any, *,
        serialization_type: Optional[WorkflowSerializationFormat] = WorkflowSerializationFormat.DEFAULT,
    ) -> None:
        """``set_event`` for async code."""
        engine = get_engine("DBOS.set_event_async()")
        await engine.in_pool(engine_messages.set_event, engine, key, value, serialization_type)

    @classmethod
    def get_event(cls, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """A workflow's event, waiting up to the timeout for it to be set; None if it is not."""
        return engine_messages.get_event(get_engine("DBOS.get_event()"), workflow_id, key, timeout_seconds)

    @classmethod
    async def get_event_async(cls, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """``get_event`` for async code."""
        engine = get_engine("DBOS.get_event_async()")
        return await engine_messages.get_event_async(engine, workflow_id, key, timeout_seconds)

    @classmethod
    def get_all_events(cls, workflow_id: str) -> Dict[str, Any]:
        """Every event a workflow has set, with its latest value."""
        return engine_messages.get_all_events(get_engine("DBOS.get_all_events()"), workflow_id)

    @classmethod
    async def get_all_events_async(cls, workflow_id: str) -> Dict[str, Any]:
        """``get_all_events`` for async code."""
        return await engine_messages.get_all_events_async(get_engine("DBOS.get_all_events_async()"), workflow_id)

    # ------------------------------------------------------------------
    # Sleep
    # ------------------------------------------------------------------

    @classmethod
    def sleep(cls, seconds: float) -> None:
        """Sleep durably: a recovered workflow sleeps only for what is left. Only in a
        workflow's own code (``AssertionError`` in a step, ``DBOSException`` outside)."""
        if seconds > 0:
            sleep.sleep(sleep.begin_sleep("DBOS.sleep()"), seconds)

    @classmethod
    async def sleep_async(cls, seconds: float) -> None:
        """``sleep`` for async code."""
        if seconds > 0:
            op = sleep.begin_sleep("DBOS.sleep_async()")
            await op.engine.in_pool(sleep.sleep, op, seconds)

    # ------------------------------------------------------------------
    # Streams
    # ------------------------------------------------------------------

    @classmethod
    def write_stream(cls, key: str, value: Any, *,
                     serialization_type: WorkflowSerializationFormat = WorkflowSerializationFormat.DEFAULT) -> None:
        """Append ``value`` to this workflow's stream ``key`` (``DBOSException`` outside a workflow)."""
        streams.write_stream(get_engine("DBOS.write_stream()"), key, value, serialization_type=serialization_type)

    @classmethod
    async def write_stream_async(
        cls, key: str, value: Any, *,
        serialization_type: WorkflowSerializationFormat = WorkflowSerializationFormat.DEFAULT,
    ) -> None:
        """``write_stream`` for async code."""
        engine = get_engine("DBOS.write_stream_async()")
        await engine.in_pool(streams.write_stream, engine, key, value, streams.WRITE, serialization_type)

    @classmethod
    def close_stream(cls, key: str) -> None:
        """Close this workflow's stream ``key``: its readers stop after the last value."""
        streams.close_stream(get_engine("DBOS.close_stream()"), key)

    @classmethod
    async def close_stream_async(cls, key: str) -> None:
        """``close_stream`` for async code."""
        engine = get_engine("DBOS.close_stream_async()")
        await engine.in_pool(streams.close_stream, engine, key)

    @classmethod
    def read_stream(cls, workflow_id: str, key: str, *, offset: int = 0,
                    polling_interval_sec: Optional[float] = None,
                    timeout_seconds: Optional[float] = None) -> Generator[Any, None, None]:
        """The values of a workflow's stream from ``offset``, until it is closed or the
        workflow ends (``DBOSStreamTimeoutError`` after ``timeout_seconds`` without one)."""
        streams.check_polling_interval(polling_interval_sec)
        engine = get_engine("DBOS.read_stream()")
        return streams.read_stream(engine, workflow_id, key, offset, timeout_seconds)

    @classmethod
    async def read_stream_async(cls, workflow_id: str, key: str, *, offset: int = 0,
                                polling_interval_sec: Optional[float] = None,
                                timeout_seconds: Optional[float] = None) -> AsyncGenerator[Any, None]:
        """``read_stream`` for async code."""
        streams.check_polling_interval(polling_interval_sec)
        engine = get_engine("DBOS.read_stream_async()")
        values = streams.read_stream(engine, workflow_id, key, offset, timeout_seconds)
        done = object()
        while True:
            value = await engine.in_pool(next, values, done)
            if value is done:
                return
            yield value


    @classmethod
    def read_stream_offset(cls, workflow_id: str, key: str, offset: int, *,
                           polling_interval_sec: Optional[float] = None,
                           timeout_seconds: Optional[float] = None) -> Any:
        """The one value at ``offset`` of a workflow's stream, waiting for it;
        ``DBOSStreamTimeoutError`` after ``timeout_seconds`` or if the stream ends first."""
        streams.check_polling_interval(polling_interval_sec)
        engine = get_engine("DBOS.read_stream_offset()")
        return streams.read_stream_offset(engine, workflow_id, key, offset, timeout_seconds)

    @classmethod
    async def read_stream_offset_async(cls, workflow_id: str, key: str, offset: int, *,
                                       polling_interval_sec: Optional[float] = None,
                                       timeout_seconds: Optional[float] = None) -> Any:
        """``read_stream_offset`` for async code."""
        streams.check_polling_interval(polling_interval_sec)
        engine = get_engine("DBOS.read_stream_offset_async()")
        return await engine.in_pool(streams.read_stream_offset, engine, workflow_id, key, offset, timeout_seconds)
