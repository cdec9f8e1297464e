"""OTLP/HTTP export, on the backend chosen with ``--backend``: an application
with ``otlp_traces_endpoints`` and ``otlp_logs_endpoints`` sends its spans and
the ``dbos`` logger's records to a receiver in this test.

Each case runs in a process of its own: OpenTelemetry's global providers can
be set once per process, and one case is the process where none is set
(DBOS installs its own, named after the application), the other where the
application set one first (DBOS keeps it and adds its exporter).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

APP = r'''
import sys
from opentelemetry import trace
from dbos import DBOS

mode, url, endpoint = sys.argv[1:4]
provider = None
if mode == "app-provider":
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    provider = TracerProvider(resource=Resource({"service.name": "app-service"}))
    trace.set_tracer_provider(provider)

@DBOS.step(name="exported_step")
def exported_step() -> int:
    return 1

@DBOS.workflow(name="exported_wf")
def exported_wf() -> int:
    return exported_step() + 1

DBOS(config={"name": "otlp-app", "system_database_url": url, "enable_otlp": True,
             "otlp_traces_endpoints": [endpoint + "/v1/traces"], "otlp_logs_endpoints": [endpoint + "/v1/logs"]})
DBOS.launch()
assert exported_wf() == 2
current = trace.get_tracer_provider()
print("kept" if current is provider else type(current).__name__)
DBOS.destroy()
current.shutdown()  # flushes the batch processors: the export happens now
from opentelemetry._logs import get_logger_provider
get_logger_provider().shutdown()
'''


class Receiver(ThreadingHTTPServer):
    """Records each OTLP/HTTP POST: (path, protobuf body)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: List[Tuple[str, bytes]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def bodies(self, path: str) -> List[bytes]:
        with self.lock:
            return [body for p, body in self.received if p == path]


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def exported_spans(receiver: Receiver) -> Dict[str, str]:
    """Span name -> the service.name of its resource, over every trace export received."""
    found: Dict[str, str] = {}
    for body in receiver.bodies("/v1/traces"):
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}.get("service.name", "")
            for scope in resource_spans.scope_spans:
                found.update({span.name: service for span in scope.spans})
    return found


def exported_log_lines(receiver: Receiver) -> List[str]:
    lines = []
    for body in receiver.bodies("/v1/logs"):
        for resource_logs in ExportLogsServiceRequest.FromString(body).resource_logs:
            for scope in resource_logs.scope_logs:
                lines.extend(record.body.string_value for record in scope.log_records)
    return lines


@pytest.mark.parametrize("mode, service, provider", [
    ("no-provider", "otlp-app", "TracerProvider"),  # DBOS installs one, named after the application
    ("app-provider", "app-service", "kept"),  # the application's own, kept
])
def test_spans_and_logs_reach_an_otlp_http_receiver(receiver: Receiver, sys_db_url: str, tmp_path: Path,
                                                   mode: str, service: str, provider: str) -> None:
    done = subprocess.run([sys.executable, "-c", APP, mode, sys_db_url, receiver.url], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [provider]
    spans = exported_spans(receiver)
    assert spans.get("exported_wf") == service
    assert spans.get("exported_step") == service
    assert "DBOS launched!" in exported_log_lines(receiver)
