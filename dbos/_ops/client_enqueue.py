"""What ``DBOSClient.enqueue`` writes: the options, checked, and the workflow's row.

Also where a client's system database URL comes from (spec section 2.4: an
application database URL implies ``<database>_dbos_sys`` beside it).
"""

from __future__ import annotations

import json
import math
import uuid
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, TypedDict

from .._clock import now_ms
from .._config import DBOSConfig, resolve_urls
from .._engine.attributes import attributes_text
from .._portable_json import WorkflowSerializationFormat
from .._queues.dedup import DuplicationPolicy, check_policy
from .._queues.queue import MAX_PRIORITY
from .._serialization import Codec
from .._sysdb import DatabaseURL
from .._sysdb.ids import check_workflow_id
from .._sysdb.records import StartResult
from ..error import DBOSConflictingWorkflowError, DBOSException

if TYPE_CHECKING:
    import sqlalchemy  # optional: only an Engine's URL is read


class _EnqueueTarget(TypedDict):
    """The keys every ``EnqueueOptions`` must have (type checkers hold callers to them)."""

    workflow_name: str
    queue_name: str


class EnqueueOptions(_EnqueueTarget, total=False):
    """What ``DBOSClient.enqueue`` starts: ``workflow_name`` and ``queue_name`` are required."""

    workflow_id: str
    app_version: str
    workflow_timeout: float
    delay_seconds: float
    deduplication_id: str
    duplication_policy: DuplicationPolicy
    priority: int
    max_recovery_attempts: int
    queue_partition_key: str
    authenticated_user: str
    authenticated_roles: List[str]
    class_name: str
    instance_name: str
    attributes: Dict[str, Any]
    application_name: str
    serialization_type: WorkflowSerializationFormat
    # An OpenTelemetry Context whose trace the workflow's span continues (the otel extra).
    otel_context: Any


def system_url(database_url: Optional[str], system_database_url: Optional[str],
               application_database_url: Optional[str],
               engine: Optional["sqlalchemy.Engine"]) -> DatabaseURL:
    """The system database a client uses: its URL, else that of ``engine`` (a
    SQLAlchemy Engine), else the one the application database URL implies."""
    if system_database_url is None and engine is not None:
        system_database_url = engine.url.render_as_string(hide_password=False)
    app_url = database_url or application_database_url
    if system_database_url is None and app_url is None:
        raise DBOSException("DBOSClient needs system_database_url (or system_database_engine, "
                            "or an application database_url)")
    config = DBOSConfig(name="dbos-client")
    if system_database_url:
        config["system_database_url"] = system_database_url
    if app_url:
        config["application_database_url"] = str(app_url)
    return resolve_urls(config)[0]


def enqueue_row(codec: Codec, owner: Optional[str], options: EnqueueOptions,
                args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """The ``workflow_status`` row of an enqueued workflow, ENQUEUED (or DELAYED)."""
    _validate(options)
    codec = codec.for_type(options.get("serialization_type"))
    name, stamp = options["workflow_name"], now_ms()
    delay = options.get("delay_seconds")
    timeout = options.get("workflow_timeout")
    roles = options.get("authenticated_roles")
    row = {
        "workflow_uuid": options.get("workflow_id") or str(uuid.uuid4()),
        "status": "DELAYED" if delay else "ENQUEUED",
        "name": name,
        "class_name": options.get("class_name"),
        "config_name": options.get("instance_name"),
        "queue_name": options["queue_name"],
        "inputs": codec.dump_inputs(tuple(args), kwargs, workflow_name=name),
        "authenticated_user": options.get("authenticated_user"),
        "authenticated_roles": json.dumps(roles) if roles is not None else None,
        "application_version": options.get("app_version"),
        "application_name": options.get("application_name") or owner,
        "created_at": stamp,
        "updated_at": stamp,
        "priority": options.get("priority") or 0,
        "deduplication_id": options.get("deduplication_id"),
        "queue_partition_key": options.get("queue_partition_key"),
        "delay_until_epoch_ms": stamp + int(delay * 1000) if delay else None,
        "workflow_timeout_ms": int(timeout * 1000) if timeout is not None else None,
        "attributes": _attributes(options),
        "recovery_attempts": 0,
        "owner_xid": uuid.uuid4().hex,
    }
    return row if codec.column is None else {**row, "serialization": codec.column}


def _attributes(options: EnqueueOptions) -> Optional[str]:
    text = attributes_text(options.get("attributes"), 'EnqueueOptions["attributes"]')
    context = options.get("otel_context")
    if context is None:
        return text
    from ..contrib.otel import attributes_with_context  # OpenTelemetry only when asked for

    return attributes_with_context(text, context)


def _validate(options: EnqueueOptions) -> None:
    for key in ("workflow_name", "queue_name"):
        value = options.get(key)
        if not isinstance(value, str) or not value:
            raise DBOSException(f"EnqueueOptions needs {key} as a non-empty string, got {value!r}")
    workflow_id = options.get("workflow_id")
    if workflow_id is not None and (not isinstance(workflow_id, str) or not workflow_id.strip()):
        raise DBOSException(f"EnqueueOptions workflow_id must be a non-empty string, got {workflow_id!r}")
    check_workflow_id(workflow_id, 'EnqueueOptions["workflow_id"]')
    check_policy(options.get("duplication_policy"), options.get("deduplication_id"))
    if options.get("queue_partition_key") is not None and options.get("deduplication_id") is not None:
        raise DBOSException("Deduplication is not supported for partitioned queues")
    priority = options.get("priority")
    if priority is not None and not (isinstance(priority, int) and 1 <= priority <= MAX_PRIORITY):
        raise DBOSException(f"EnqueueOptions priority must be an integer from 1 to {MAX_PRIORITY}, got {priority!r}")
    for key in ("delay_seconds", "workflow_timeout"):
        number = options.get(key)
        if number is not None and not (isinstance(number, (int, float)) and math.isfinite(number)
                                       and number >= (0 if key == "delay_seconds" else 1e-3)):
            raise DBOSException(f"EnqueueOptions {key} must be a positive number, got {number!r}")


def check_same_workflow(row: Dict[str, Any], found: Optional[StartResult]) -> None:
    """``DBOSConflictingWorkflowError`` if the enqueued ID is held by another workflow function."""
    if found is None or found.created:
        return
    if (found.name, found.class_name, found.config_name) != (row["name"], row["class_name"], row["config_name"]):
        raise DBOSConflictingWorkflowError(
            row["workflow_uuid"], f"workflow {row['workflow_uuid']} exists and runs {found.name}, not {row['name']}")
