"""The telemetry keys of the configuration: DBOSConfig's flat names, the YAML
``telemetry`` section's, their defaults; and the engine's hook when nothing traces."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from dbos import DBOSConfig
from dbos._config import config_from_yaml, resolve
from dbos._engine import tracing
from dbos._engine.context import DBOSContext


def test_defaults_trace_nothing_and_follow_log_level() -> None:
    settings = resolve(DBOSConfig(name="app", log_level="debug"))
    assert settings.enable_otlp is False
    assert (settings.otlp_traces_endpoints, settings.otlp_logs_endpoints) == ([], [])
    assert (settings.otlp_attributes, settings.otel_attribute_format) == ({}, "legacy")
    assert (settings.log_level, settings.console_log_level, settings.otlp_log_level) == ("DEBUG",) * 3


def test_flat_keys_are_read(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dbos"):
        settings = resolve(DBOSConfig(
            name="app", enable_otlp=True, otlp_traces_endpoints=["http://collector:4318/v1/traces"],
            otlp_logs_endpoints=["http://collector:4318/v1/logs"], otlp_attributes={"team": "core"},
            otel_attribute_format="semconv", otlp_log_level="warning"))
    assert caplog.records == []  # no longer "accepted and ignored"
    assert settings.enable_otlp is True
    assert settings.otlp_traces_endpoints == ["http://collector:4318/v1/traces"]
    assert settings.otlp_logs_endpoints == ["http://collector:4318/v1/logs"]
    assert (settings.otlp_attributes, settings.otel_attribute_format) == ({"team": "core"}, "semconv")
    assert settings.otlp_log_level == "WARNING"


def test_the_yaml_telemetry_section_becomes_the_flat_keys() -> None:
    config = config_from_yaml({"name": "app", "telemetry": {
        "logs": {"logLevel": "INFO", "otlpLogLevel": "ERROR"},
        "OTLPExporter": {"tracesEndpoint": "http://collector:4318/v1/traces",
                         "logsEndpoint": ["http://a/v1/logs", "http://b/v1/logs"]},
        "otlp_attributes": {"region": "eu"},
        "disable_otlp": False,
    }})
    assert config == {
        "name": "app", "log_level": "INFO", "otlp_log_level": "ERROR", "enable_otlp": True,
        "otlp_traces_endpoints": ["http://collector:4318/v1/traces"],
        "otlp_logs_endpoints": ["http://a/v1/logs", "http://b/v1/logs"], "otlp_attributes": {"region": "eu"},
    }
    assert config_from_yaml({"name": "app", "telemetry": {"disable_otlp": True}})["enable_otlp"] is False


def test_nothing_traces_without_an_installed_tracer() -> None:
    assert tracing.installed is None
    with tracing.span("wf", "workflow", "id", DBOSContext(), None) as traced:
        assert traced is None
    assert tracing.carrier_for(DBOSContext(), direct=False) is None
    assert tracing.parent_of('{"dbos.otelContext": {"traceparent": "00-x"}}') is None


WITHOUT_OPENTELEMETRY = r"""
import sys
sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
from dbos import DBOS
from dbos.error import DBOSInitializationError

@DBOS.workflow()
def plain() -> str:
    assert DBOS.span is None
    return "done"

DBOS(config={"name": "plain", "system_database_url": "sqlite:///plain.sqlite"})
DBOS.launch()
assert plain() == "done"
DBOS.destroy()
try:
    DBOS(config={"name": "traced", "system_database_url": "sqlite:///traced.sqlite", "enable_otlp": True})
except DBOSInitializationError as exc:
    print(exc)
"""


def test_without_the_extra_nothing_changes_and_enable_otlp_says_what_to_install(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", WITHOUT_OPENTELEMETRY], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("enable_otlp needs OpenTelemetry: pip install 'dbos[otel]'")


def test_importing_dbos_does_not_import_opentelemetry() -> None:
    script = "import sys, dbos; print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
