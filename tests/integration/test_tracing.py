"""OpenTelemetry tracing, on the backend chosen with ``--backend``: the span
tree of a workflow (steps, a child, an enqueued workflow), DBOS's attribute
names, ``DBOS.span``, trace context carried through the queue (from a
workflow, ``PropagateOtelContext`` and ``EnqueueOptions.otel_context``), and
the application's TracerProvider kept. Export over OTLP/HTTP is in
``test_tracing_export.py``.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Dict, Iterator, List, Optional

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from dbos import DBOS, DBOSClient, DBOSConfig, DBOSContextSetAuth, PropagateOtelContext, Queue, SetWorkflowID
from dbos._engine import tracing
from dbos._engine.engine import peek_engine
from dbos._engine.recovery import recover_one
from tests.probe import execute, qualified
from tests.threads import result

WAIT_S = 30.0


class Ended(SpanProcessor):
    """Wakes a waiter when a span ends: a queued workflow's span ends on a worker thread."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.names: List[str] = []

    def on_end(self, span: ReadableSpan) -> None:
        with self.condition:
            self.names.append(span.name)
            self.condition.notify_all()

    def wait_for(self, name: str) -> None:
        with self.condition:
            assert self.condition.wait_for(lambda: name in self.names, WAIT_S), f"span {name} never ended"


# One provider for the whole process: OpenTelemetry lets the global one be set once.
EXPORTER = InMemorySpanExporter()
ENDED = Ended()


def app_provider() -> TracerProvider:
    """The application's provider: the global one, set here unless a test set it before."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    if not getattr(provider, "_dbos_test_exporter", False):
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        provider.add_span_processor(ENDED)
        setattr(provider, "_dbos_test_exporter", True)
    return provider


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    app_provider()
    EXPORTER.clear()
    with ENDED.condition:
        ENDED.names.clear()
    yield EXPORTER


def traced_config(config: DBOSConfig, **extra: Any) -> DBOSConfig:
    return DBOSConfig(**{**config, "enable_otlp": True, **extra})  # type: ignore[typeddict-item]


def by_name(exporter: InMemorySpanExporter) -> Dict[str, ReadableSpan]:
    found = {s.name: s for s in exporter.get_finished_spans()}
    return found


def parent_id(span: ReadableSpan) -> Optional[int]:
    return span.parent.span_id if span.parent is not None else None


@pytest.fixture
def app(config: DBOSConfig, spans: InMemorySpanExporter) -> Iterator[Dict[str, Any]]:
    queue = Queue("traced", polling_interval_sec=0.05)

    @DBOS.step(name="first_step")
    def first_step() -> str:
        return "one"

    @DBOS.step(name="second_step")
    def second_step() -> str:
        span = DBOS.span
        assert span is not None
        span.set_attribute("seen.in", "second_step")
        return str(span.name)

    @DBOS.workflow(name="child_wf")
    def child_wf() -> Optional[str]:
        return DBOS.workflow_id

    @DBOS.workflow(name="queued_wf")
    def queued_wf(value: int) -> int:
        return value * 2

    @DBOS.workflow(name="parent_wf")
    def parent_wf() -> List[Any]:
        handle = queue.enqueue(queued_wf, 21)
        return [first_step(), second_step(), child_wf(), handle.get_result(), handle.workflow_id]

    DBOS(config=traced_config(config))
    DBOS.launch()
    yield {"parent": parent_wf, "queued": queued_wf, "queue": queue}


def test_a_workflow_its_steps_its_child_and_its_enqueued_workflow_make_one_trace(
        app: Dict[str, Any], spans: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("the-app")
    with tracer.start_as_current_span("request") as request:
        with DBOSContextSetAuth("alice", ["admin"]), SetWorkflowID("wf-traced"):
            outcome = app["parent"]()
    ENDED.wait_for("queued_wf")
    assert outcome == ["one", "second_step", "wf-traced-4", 42, "wf-traced-1"]

    found = by_name(spans)
    assert set(found) >= {"request", "parent_wf", "first_step", "second_step", "child_wf", "queued_wf"}
    trace_id = request.get_span_context().trace_id
    assert {s.context.trace_id for s in found.values()} == {trace_id}

    parent = found["parent_wf"]
    assert parent_id(parent) == request.get_span_context().span_id
    for name in ("first_step", "second_step", "child_wf", "queued_wf"):
        assert parent_id(found[name]) == parent.context.span_id, name

    assert parent.attributes is not None
    assert parent.attributes["operationUUID"] == "wf-traced"
    assert parent.attributes["operationType"] == "workflow"
    assert parent.attributes["authenticatedUser"] == "alice"
    assert parent.attributes["authenticatedUserRoles"] == json.dumps(["admin"])
    assert parent.attributes["executorID"] == DBOS.executor_id
    assert parent.attributes["applicationVersion"] == DBOS.application_version
    assert parent.status.status_code == StatusCode.OK

    step = found["second_step"].attributes
    assert step is not None
    assert (step["operationType"], step["operationUUID"], step["seen.in"]) == ("step", "wf-traced", "second_step")
    child = found["child_wf"].attributes
    assert child is not None and child["operationUUID"] == "wf-traced-4"
    queued = found["queued_wf"].attributes
    assert queued is not None
    assert (queued["operationUUID"], queued["queueName"]) == ("wf-traced-1", "traced")

    # The carrier the worker read: kept in the enqueued workflow's attributes, as DBOS Transact keeps it.
    status = DBOS.get_workflow_status("wf-traced-1")
    assert status is not None and status.attributes is not None
    assert status.attributes["dbos.otelContext"]["traceparent"].split("-")[1] == f"{trace_id:032x}"


def test_the_applications_tracer_provider_is_kept(app: Dict[str, Any]) -> None:
    provider = app_provider()
    assert trace.get_tracer_provider() is provider
    assert tracing.installed is DBOS.tracer


def test_dbos_span_is_the_current_span_and_needs_a_context(app: Dict[str, Any]) -> None:
    with pytest.raises(AssertionError, match="DBOS.span needs a DBOS context"):
        DBOS.span
    tracer = trace.get_tracer("the-app")
    with tracer.start_as_current_span("outside") as outside:
        with DBOSContextSetAuth(None, None):
            assert DBOS.span is outside  # the application's span: DBOS.span is whatever is active


def test_failures_and_retries_show_on_the_spans(config: DBOSConfig, spans: InMemorySpanExporter) -> None:
    attempts: List[int] = []

    @DBOS.step(name="flaky", retries_allowed=True, interval_seconds=0.001, max_attempts=3)
    def flaky() -> int:
        attempts.append(1)
        if len(attempts) < 2:
            raise ValueError("not yet")
        return len(attempts)

    @DBOS.workflow(name="failing_wf")
    def failing_wf() -> None:
        flaky()
        raise RuntimeError("the workflow failed")

    DBOS(config=traced_config(config))
    DBOS.launch()
    with pytest.raises(RuntimeError):
        failing_wf()
    found = by_name(spans)
    assert found["failing_wf"].status.status_code == StatusCode.ERROR
    assert found["failing_wf"].status.description == "the workflow failed"
    assert found["flaky"].status.status_code == StatusCode.OK
    assert [e.name for e in found["flaky"].events] == ["Step attempt 1 failed"]
    event = found["flaky"].events[0].attributes
    assert event is not None and event["error"] == "not yet"


def test_semconv_names_and_otlp_attributes(config: DBOSConfig, spans: InMemorySpanExporter) -> None:
    @DBOS.workflow(name="named_wf")
    def named_wf() -> None:
        pass

    DBOS(config=traced_config(config, otel_attribute_format="semconv", otlp_attributes={"team": "core"}))
    DBOS.launch()
    with SetWorkflowID("wf-semconv"):
        named_wf()
    attributes = by_name(spans)["named_wf"].attributes
    assert attributes is not None
    assert attributes["dbos.operation.workflow_id"] == "wf-semconv"
    assert attributes["dbos.operation.type"] == "workflow"
    assert attributes["dbos.executor.id"] == DBOS.executor_id
    assert attributes["team"] == "core"
    assert "operationUUID" not in attributes


def test_without_enable_otlp_nothing_is_traced(config: DBOSConfig, spans: InMemorySpanExporter) -> None:
    @DBOS.workflow(name="quiet_wf")
    def quiet_wf() -> Any:
        return DBOS.span

    DBOS(config=config)
    DBOS.launch()
    assert tracing.installed is None
    assert quiet_wf() is None  # no span is active: DBOS made none
    assert spans.get_finished_spans() == ()


def test_propagate_otel_context_and_the_clients_otel_context(
        config: DBOSConfig, sys_db_url: str, spans: InMemorySpanExporter) -> None:
    queue = Queue("propagated", polling_interval_sec=0.05)

    @DBOS.workflow(name="worker_wf")
    def worker_wf(tag: str) -> str:
        return tag

    DBOS(config=traced_config(config))
    DBOS.launch()
    tracer = trace.get_tracer("the-app")
    with tracer.start_as_current_span("producer") as producer:
        pass  # ended: only its context is handed on
    with PropagateOtelContext(trace.set_span_in_context(producer)):
        handle = queue.enqueue(worker_wf, "from-block")
    assert result(handle) == "from-block"
    client = DBOSClient(system_database_url=sys_db_url)
    try:
        with tracer.start_as_current_span("client-request") as request:
            from opentelemetry import context as otel_context

            enqueued = client.enqueue({"workflow_name": "worker_wf", "queue_name": "propagated",
                                       "workflow_id": "wf-from-client", "otel_context": otel_context.get_current()},
                                      "from-client")
        assert result(enqueued) == "from-client"
    finally:
        client.destroy()
    ENDED.wait_for("worker_wf")
    with ENDED.condition:
        assert ENDED.condition.wait_for(lambda: ENDED.names.count("worker_wf") == 2, WAIT_S)
    workers = sorted((s for s in spans.get_finished_spans() if s.name == "worker_wf"),
                     key=lambda s: str((s.attributes or {}).get("operationUUID")))
    by_parent = {parent_id(s) for s in workers}
    assert by_parent == {producer.get_span_context().span_id, request.get_span_context().span_id}
    client_span = next(s for s in workers if (s.attributes or {}).get("operationUUID") == "wf-from-client")
    assert client_span.context.trace_id == request.get_span_context().trace_id


def test_async_workflows_and_steps_are_traced_too(config: DBOSConfig, spans: InMemorySpanExporter) -> None:
    import asyncio

    @DBOS.step(name="async_step")
    async def async_step() -> str:
        return str(DBOS.span.name)

    @DBOS.workflow(name="async_child")
    async def async_child() -> str:
        return await async_step()

    @DBOS.workflow(name="async_parent")
    async def async_parent() -> str:
        handle = await DBOS.start_workflow_async(async_child)  # runs as a task of its own
        return await handle.get_result()

    DBOS(config=traced_config(config))
    DBOS.launch()
    assert asyncio.run(async_parent()) == "async_step"
    ENDED.wait_for("async_child")
    found = by_name(spans)
    assert parent_id(found["async_child"]) == found["async_parent"].context.span_id
    assert parent_id(found["async_step"]) == found["async_child"].context.span_id
    assert len({s.context.trace_id for s in found.values()}) == 1


def test_a_transaction_is_a_span_of_its_workflow(config: DBOSConfig, empty_db_url: str,
                                                 spans: InMemorySpanExporter) -> None:
    @DBOS.transaction(name="traced_tx")
    def traced_tx() -> str:
        return str(DBOS.span.name)

    @DBOS.workflow(name="tx_wf")
    def tx_wf() -> str:
        return traced_tx()

    DBOS(config=traced_config(config, application_database_url=empty_db_url))
    DBOS.launch()
    with SetWorkflowID("wf-tx"):
        assert tx_wf() == "traced_tx"
    found = by_name(spans)
    tx = found["traced_tx"]
    assert parent_id(tx) == found["tx_wf"].context.span_id
    assert tx.attributes is not None
    assert (tx.attributes["operationType"], tx.attributes["operationUUID"]) == ("transaction", "wf-tx")


def test_a_recovered_workflow_continues_the_trace_that_started_it(
        config: DBOSConfig, sys_db_url: str, spans: InMemorySpanExporter) -> None:
    @DBOS.workflow(name="recovered_wf")
    def recovered_wf() -> str:
        return "done"

    DBOS(config=traced_config(config))
    DBOS.launch()
    tracer = trace.get_tracer("the-app")
    with tracer.start_as_current_span("original") as original, SetWorkflowID("wf-recovered"):
        handle = DBOS.start_workflow(recovered_wf)
    assert result(handle) == "done"
    table = qualified(sys_db_url, "workflow_status")  # as if its process had died mid-run:
    execute(sys_db_url, f"UPDATE {table} SET status = 'PENDING', output = NULL WHERE workflow_uuid = %s",
            ("wf-recovered",))
    engine = peek_engine()
    assert engine is not None
    assert result(recover_one(engine, "wf-recovered")) == "done"
    with ENDED.condition:
        assert ENDED.condition.wait_for(lambda: ENDED.names.count("recovered_wf") == 2, WAIT_S)
    runs = [s for s in spans.get_finished_spans() if s.name == "recovered_wf"]
    assert len(runs) == 2
    assert {parent_id(s) for s in runs} == {original.get_span_context().span_id}
