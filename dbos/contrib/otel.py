"""OpenTelemetry for DBOS (the ``otel`` extra): spans, trace propagation, OTLP export.

Nothing here imports OpenTelemetry at module level: ``import dbos`` stays
free of it, and a process that never sets ``enable_otlp`` never loads it.
``configure`` (called by ``DBOS()`` when ``enable_otlp`` is set) installs
``dbos_tracer`` as the engine's tracer (``_engine/tracing.py``), and sends
spans and the ``dbos`` logger's records to the configured OTLP/HTTP
endpoints. A TracerProvider or LoggerProvider the application set first is
kept: DBOS adds its exporters to it rather than replacing it.

Span attributes carry DBOS Transact's names (``operationUUID``,
``operationType``, ...), or with ``otel_attribute_format="semconv"`` their
``dbos.*`` equivalents, so existing dashboards keep working.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Set

from .._config import Settings
from .._engine import tracing
from .._engine.context import DBOSContext
from ..error import DBOSException, DBOSInitializationError

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span

logger = logging.getLogger("dbos")

TRACER_NAME = "dbos-tracer"
EXTRA = "pip install 'dbos[otel]'"

# DBOS Transact's attribute names and their dbos.* names under "semconv".
SEMCONV_NAMES: Dict[str, str] = {
    "operationUUID": "dbos.operation.workflow_id",
    "operationType": "dbos.operation.type",
    "applicationID": "dbos.application.id",
    "applicationVersion": "dbos.application.version",
    "executorID": "dbos.executor.id",
    "queueName": "dbos.queue.name",
    "authenticatedUser": "dbos.user.name",
    "authenticatedUserRoles": "dbos.user.roles",
    "authenticatedUserAssumedRole": "dbos.user.assumed_role",
    "requestID": "dbos.request.id",
    "requestIP": "dbos.request.ip",
    "requestURL": "dbos.request.url",
    "requestMethod": "dbos.request.method",
    "responseCode": "dbos.response.status_code",
}


@lru_cache(maxsize=1)
def available() -> bool:
    """Whether the OpenTelemetry API and SDK are installed (looked up once)."""
    try:
        return all(importlib.util.find_spec(name) is not None
                   for name in ("opentelemetry.trace", "opentelemetry.sdk.trace"))
    except ImportError:  # the parent package is missing, or blocked
        return False


def require(what: str) -> None:
    if not available():
        raise DBOSException(f"{what} needs OpenTelemetry: {EXTRA}")


# ----------------------------------------------------------------------
# Carriers: the W3C trace context, and nothing else (no baggage)
# ----------------------------------------------------------------------


def inject(context: "Optional[Context]" = None) -> Dict[str, str]:
    """The ``traceparent``/``tracestate`` of ``context`` (None: the current
    one); empty when it holds no valid span. Baggage is left out: it may be
    large or private, and the carrier is stored in the workflow's row."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: Dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=context)
    return carrier


def extract(carrier: Dict[str, Any]) -> "Optional[Context]":
    """The context a stored carrier names; None if it names no valid span
    (a malformed carrier is logged and ignored, never raised)."""
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    try:
        context = TraceContextTextMapPropagator().extract(carrier)
    except Exception as exc:  # non-string values make the propagator itself fail
        logger.warning(f"Ignoring a malformed {tracing.CARRIER_ATTRIBUTE} workflow attribute: {exc}")
        return None
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def attributes_with_context(attributes: Optional[str], context: Any) -> Optional[str]:
    """``EnqueueOptions.otel_context``: the attributes' JSON text with its carrier added
    (unchanged when the context holds no valid span)."""
    require('EnqueueOptions["otel_context"]')
    carrier = inject(context)
    return tracing.with_carrier(attributes, carrier) if carrier else attributes


def current_span() -> "Optional[Span]":
    """The active span, DBOS's or not; None without OpenTelemetry or a valid span."""
    if not available():
        return None
    from opentelemetry import trace

    span = trace.get_current_span()
    return span if span.get_span_context().is_valid else None


# ----------------------------------------------------------------------
# Spans
# ----------------------------------------------------------------------


class _Traced:
    """One open span, as the engine's ``tracing.Traced``."""

    def __init__(self, span: "Span") -> None:
        self.span = span
        self.error: Optional[BaseException] = None

    def failed(self, error: BaseException) -> None:
        self.error = error

    def attempt_failed(self, attempt: int, error: BaseException, retry_in: float) -> None:
        self.span.add_event(f"Step attempt {attempt} failed",
                            {"error": str(error), "retryIntervalSeconds": retry_in})


class DBOSTracer:
    """DBOS's tracer (``DBOS.tracer``): starts the spans of workflows, steps
    and transactions, with DBOS's attributes and the configured ``otlp_attributes``."""

    def __init__(self) -> None:
        self.app_id: Optional[str] = os.environ.get("DBOS__APPID") or None
        self.provider: Any = None
        self.disable_otlp = True
        self.otel_attribute_format = "legacy"
        self.otlp_attributes: Dict[str, str] = {}
        self._cached: Any = None

    def set_provider(self, provider: Any) -> None:
        """Start spans with ``provider``'s tracer instead of the global provider's."""
        self.provider = provider
        self._cached = None

    def attribute_name(self, key: str) -> str:
        """The name ``key`` (a DBOS Transact attribute name) is exported under."""
        return SEMCONV_NAMES.get(key, key) if self.otel_attribute_format == "semconv" else key

    def _tracer(self) -> Any:
        # Kept: a provider makes a new tracer on every call. The global
        # provider's stands in for one the application sets later.
        if self._cached is None:
            from opentelemetry import trace

            provider = self.provider or trace.get_tracer_provider()
            self._cached = provider.get_tracer(TRACER_NAME)
        return self._cached

    def start_span(self, attributes: Dict[str, Any], parent: "Optional[Span]" = None) -> "Span":
        """A span named ``attributes["name"]`` with the other attributes (None and
        non-scalar values left out), a child of ``parent`` or of the current span."""
        require("DBOS.tracer.start_span")
        from opentelemetry import trace

        context = trace.set_span_in_context(parent) if parent is not None else None
        span: Span = self._tracer().start_span(name=attributes["name"], context=context)
        for key, value in attributes.items():
            if key != "name" and isinstance(value, (str, bool, int, float)):
                span.set_attribute(self.attribute_name(key), value)
        for key, value in self.otlp_attributes.items():  # the user's own names, as given
            span.set_attribute(key, value)
        return span

    def end_span(self, span: "Span") -> None:
        span.end()

    def get_current_span(self) -> "Optional[Span]":
        """The active span, DBOS's or not; None if there is none."""
        return current_span()

    # The engine's Tracer protocol (_engine/tracing.py).

    @contextmanager
    def span(self, name: str, kind: str, workflow_id: str, caller: Optional[DBOSContext], identity: Any,
             parent: Any = None, queue_name: Optional[str] = None) -> Iterator[_Traced]:
        from opentelemetry import context as otel_context
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode

        attributes = self._attributes(name, kind, workflow_id, caller, identity, queue_name)
        started = self._tracer().start_span(name=name, context=parent)
        started.set_attributes(attributes)
        token = otel_context.attach(trace.set_span_in_context(started, parent))
        traced = _Traced(started)
        try:
            yield traced
        except BaseException as exc:
            traced.failed(exc)
            raise
        finally:
            if traced.error is None:
                started.set_status(Status(StatusCode.OK))
            else:
                started.set_status(Status(StatusCode.ERROR, str(traced.error)))
            started.end()
            otel_context.detach(token)

    def _attributes(self, name: str, kind: str, workflow_id: str, caller: Optional[DBOSContext],
                    identity: Any, queue_name: Optional[str]) -> Dict[str, Any]:
        user = caller.authenticated_user if caller is not None else None
        roles = caller.authenticated_roles if caller is not None else None
        values: Dict[str, Any] = {
            "operationUUID": workflow_id,
            "operationType": kind,
            "applicationID": self.app_id or getattr(identity, "app_id", None) or None,
            "applicationVersion": getattr(identity, "app_version", None),
            "executorID": getattr(identity, "executor_id", None),
            "authenticatedUser": user,
            "authenticatedUserRoles": json.dumps(roles) if roles is not None else "",
            "authenticatedUserAssumedRole": caller.assumed_role if caller is not None else None,
            "queueName": queue_name,
        }
        found = {self.attribute_name(k): v for k, v in values.items() if v is not None}
        found.update(self.otlp_attributes)
        return found

    def carrier(self) -> Optional[Dict[str, str]]:
        return inject() or None

    def parent_from(self, carrier: Dict[str, Any]) -> Any:
        return extract(carrier)


dbos_tracer = DBOSTracer()


# ----------------------------------------------------------------------
# Configuration: providers and OTLP exporters
# ----------------------------------------------------------------------

# The endpoints given an exporter, per provider: DBOS() constructed again
# (as tests and notebooks do) must not export every span twice.
_exporting: Dict[int, Set[str]] = {}


def configure(settings: Settings) -> None:
    """Trace with ``dbos_tracer`` and export as ``settings`` say (``enable_otlp`` set)."""
    if not available():
        raise DBOSInitializationError(f"enable_otlp needs OpenTelemetry: {EXTRA}")
    dbos_tracer.disable_otlp = False
    dbos_tracer.otlp_attributes = dict(settings.otlp_attributes)
    dbos_tracer.otel_attribute_format = settings.otel_attribute_format
    _export_traces(settings.name, settings.otlp_traces_endpoints)
    _export_logs(settings.name, settings.otlp_logs_endpoints, settings.otlp_log_level)
    dbos_tracer.set_provider(dbos_tracer.provider)  # the global provider may be new
    tracing.install(dbos_tracer)


def unconfigure() -> None:
    """Stop tracing (``DBOS.destroy``); exporters already set up stay with their provider."""
    dbos_tracer.disable_otlp = True
    tracing.install(None)


def _resource(name: str) -> Any:
    from opentelemetry.sdk.resources import Resource

    return Resource(attributes={"service.name": name})


def _export_traces(name: str, endpoints: List[str]) -> None:
    from opentelemetry import trace

    provider: Any = trace.get_tracer_provider()
    if not endpoints:
        if isinstance(provider, trace.ProxyTracerProvider):
            logger.warning("enable_otlp is set, but there is no TracerProvider and no "
                           "otlp_traces_endpoints: spans go nowhere")
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    if isinstance(provider, trace.ProxyTracerProvider):  # none set yet: ours becomes the global one
        provider = TracerProvider(resource=_resource(name))
        if os.environ.get("DBOS__CONSOLE_TRACES") is not None:
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        trace.set_tracer_provider(provider)
    if not hasattr(provider, "add_span_processor"):
        logger.warning(f"The TracerProvider set ({type(provider).__name__}) takes no exporters; "
                       "otlp_traces_endpoints are not used")
        return
    for endpoint in _new_endpoints(provider, endpoints):
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))


def _new_endpoints(provider: Any, endpoints: List[str]) -> List[str]:
    done = _exporting.setdefault(id(provider), set())
    fresh = [e for e in dict.fromkeys(endpoints) if e not in done]
    done.update(fresh)
    return fresh


def _export_logs(name: str, endpoints: List[str], level: str) -> None:
    """Records of the ``dbos`` logger go to the OTLP logs endpoints (with their trace IDs)."""
    if not endpoints:
        return
    from opentelemetry._logs import get_logger_provider, set_logger_provider
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    provider: Any = get_logger_provider()
    if not hasattr(provider, "add_log_record_processor"):  # the API's proxy: none set yet
        provider = LoggerProvider(resource=_resource(name))
        set_logger_provider(provider)
    for endpoint in _new_endpoints(provider, endpoints):
        provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint)))
    dbos_logger = logging.getLogger("dbos")
    if not any(getattr(h, "_dbos_otlp", False) for h in dbos_logger.handlers):
        handler = _logging_handler(provider, level)
        setattr(handler, "_dbos_otlp", True)
        dbos_logger.addHandler(handler)


def _logging_handler(provider: Any, level: str) -> logging.Handler:
    # The instrumentation package's handler replaces the SDK's (deprecated) one.
    try:
        from opentelemetry.instrumentation.logging.handler import LoggingHandler
    except ImportError:
        from opentelemetry.sdk._logs import LoggingHandler  # type: ignore[assignment]
    handler: logging.Handler = LoggingHandler(level=logging.getLevelName(level), logger_provider=provider)
    return handler
