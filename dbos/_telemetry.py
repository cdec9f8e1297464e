"""The telemetry part of the configuration: log levels and OpenTelemetry export.

``DBOSConfig`` names these keys flat (``log_level``, ``enable_otlp``,
``otlp_traces_endpoints``...); ``dbos_config.yaml`` keeps them in its
``telemetry`` section, under DBOS Transact's names. What they do is in
``dbos.contrib.otel`` (spans and exporters) and ``_logger.py`` (the console).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping


def telemetry_settings(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The resolved ``Settings`` fields of ``config``'s telemetry keys, defaults filled in."""
    level = str(config.get("log_level") or "INFO").upper()
    return {
        "log_level": level,
        "console_log_level": str(config.get("console_log_level") or level).upper(),
        "otlp_log_level": str(config.get("otlp_log_level") or level).upper(),
        "enable_otlp": bool(config.get("enable_otlp")),
        "otlp_traces_endpoints": list(config.get("otlp_traces_endpoints") or []),
        "otlp_logs_endpoints": list(config.get("otlp_logs_endpoints") or []),
        "otlp_attributes": dict(config.get("otlp_attributes") or {}),
        "otel_attribute_format": config.get("otel_attribute_format") or "legacy",
    }


_YAML_LOG_LEVELS = (("logLevel", "log_level"), ("consoleLogLevel", "console_log_level"),
                    ("otlpLogLevel", "otlp_log_level"))
_YAML_ENDPOINTS = (("tracesEndpoint", "otlp_traces_endpoints"), ("logsEndpoint", "otlp_logs_endpoints"))


def telemetry_from_yaml(telemetry: Mapping[str, Any], flat: Dict[str, Any]) -> None:
    """Add the YAML ``telemetry`` section's keys to ``flat`` (a ``DBOSConfig``) under
    their ``DBOSConfig`` names, where ``flat`` does not set them itself."""
    logs = telemetry.get("logs", {})
    for yaml_key, key in _YAML_LOG_LEVELS:
        if yaml_key in logs:
            flat.setdefault(key, logs[yaml_key])
    exporter = telemetry.get("OTLPExporter", {})
    for yaml_key, key in _YAML_ENDPOINTS:
        if yaml_key in exporter:
            value = exporter[yaml_key]
            flat.setdefault(key, [value] if isinstance(value, str) else list(value))
    if "otlp_attributes" in telemetry:
        flat.setdefault("otlp_attributes", telemetry["otlp_attributes"])
    if "disable_otlp" in telemetry:
        flat.setdefault("enable_otlp", not telemetry["disable_otlp"])
