"""Peewee models of the system tables (DBOS Transact 2.x layout).

The classes here are unbound templates. ``bind_models`` makes subclasses tied
to one database and schema, so two system databases (an app and a client, or
two tests) never share a binding. Foreign keys are declared in the migrations
only: the engine reads and writes rows by key and never joins through them.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Type

import peewee as pw


class _Template(pw.Model):
    class Meta:
        legacy_table_names = False


class WorkflowStatus(_Template):
    workflow_uuid = pw.TextField(primary_key=True)
    status = pw.TextField(null=True)
    name = pw.TextField(null=True)
    authenticated_user = pw.TextField(null=True)
    assumed_role = pw.TextField(null=True)
    authenticated_roles = pw.TextField(null=True)
    request = pw.TextField(null=True)
    inputs = pw.TextField(null=True)
    output = pw.TextField(null=True)
    error = pw.TextField(null=True)
    executor_id = pw.TextField(null=True)
    created_at = pw.BigIntegerField()
    updated_at = pw.BigIntegerField()
    application_version = pw.TextField(null=True)
    application_id = pw.TextField(null=True)
    class_name = pw.CharField(max_length=255, null=True)
    config_name = pw.CharField(max_length=255, null=True)
    recovery_attempts = pw.BigIntegerField(null=True, default=0)
    queue_name = pw.TextField(null=True)
    workflow_timeout_ms = pw.BigIntegerField(null=True)
    workflow_deadline_epoch_ms = pw.BigIntegerField(null=True)
    started_at_epoch_ms = pw.BigIntegerField(null=True)
    deduplication_id = pw.TextField(null=True)
    priority = pw.IntegerField(default=0)
    queue_partition_key = pw.TextField(null=True)
    forked_from = pw.TextField(null=True)
    was_forked_from = pw.BooleanField(default=False)
    owner_xid = pw.TextField(null=True)
    parent_workflow_id = pw.TextField(null=True)
    serialization = pw.TextField(null=True)
    delay_until_epoch_ms = pw.BigIntegerField(null=True)
    rate_limited = pw.BooleanField(default=False)
    completed_at = pw.BigIntegerField(null=True)
    attributes = pw.TextField(null=True)
    schedule_name = pw.TextField(null=True)
    debounce_deadline_epoch_ms = pw.BigIntegerField(null=True)
    is_debounced = pw.BooleanField(default=False)
    application_name = pw.TextField(null=True)

    class Meta:
        table_name = "workflow_status"
        # The listing's (migration 0007): newest first, by status, by name and status.
        indexes = ((("created_at", "workflow_uuid"), False), (("status", "created_at", "workflow_uuid"), False),
                   (("name", "status", "created_at", "workflow_uuid"), False))


class OperationOutput(_Template):
    workflow_uuid = pw.TextField()
    function_id = pw.IntegerField()
    function_name = pw.TextField(default="")
    output = pw.TextField(null=True)
    error = pw.TextField(null=True)
    child_workflow_id = pw.TextField(null=True)
    started_at_epoch_ms = pw.BigIntegerField(null=True)
    completed_at_epoch_ms = pw.BigIntegerField(null=True)
    serialization = pw.TextField(null=True)
    application_name = pw.TextField(null=True)

    class Meta:
        table_name = "operation_outputs"
        primary_key = pw.CompositeKey("workflow_uuid", "function_id")


class Notification(_Template):
    message_uuid = pw.TextField(primary_key=True)
    destination_uuid = pw.TextField()
    topic = pw.TextField(null=True)
    message = pw.TextField()
    created_at_epoch_ms = pw.BigIntegerField()
    serialization = pw.TextField(null=True)
    consumed = pw.BooleanField(default=False)
    seq = pw.BigIntegerField(null=True)

    class Meta:
        table_name = "notifications"


class WorkflowEvent(_Template):
    workflow_uuid = pw.TextField()
    key = pw.TextField()
    value = pw.TextField()
    serialization = pw.TextField(null=True)

    class Meta:
        table_name = "workflow_events"
        primary_key = pw.CompositeKey("workflow_uuid", "key")


class WorkflowEventHistory(_Template):
    workflow_uuid = pw.TextField()
    function_id = pw.IntegerField()
    key = pw.TextField()
    value = pw.TextField()
    serialization = pw.TextField(null=True)

    class Meta:
        table_name = "workflow_events_history"
        primary_key = pw.CompositeKey("workflow_uuid", "key", "function_id")


class Stream(_Template):
    workflow_uuid = pw.TextField()
    key = pw.TextField()
    value = pw.TextField()
    offset = pw.IntegerField()
    function_id = pw.IntegerField(default=0)
    serialization = pw.TextField(null=True)

    class Meta:
        table_name = "streams"
        primary_key = pw.CompositeKey("workflow_uuid", "key", "offset")


class ApplicationVersion(_Template):
    version_id = pw.TextField(primary_key=True)
    version_name = pw.TextField(unique=True)
    version_timestamp = pw.BigIntegerField()
    created_at = pw.BigIntegerField()
    application_name = pw.TextField(null=True)

    class Meta:
        table_name = "application_versions"


class QueueRow(_Template):
    queue_id = pw.TextField(primary_key=True)
    name = pw.TextField(unique=True)
    concurrency = pw.IntegerField(null=True)
    worker_concurrency = pw.IntegerField(null=True)
    rate_limit_max = pw.IntegerField(null=True)
    rate_limit_period_sec = pw.DoubleField(null=True)
    priority_enabled = pw.BooleanField(default=False)
    partition_queue = pw.BooleanField(default=False)
    partition_concurrency = pw.IntegerField(null=True)
    partition_worker_concurrency = pw.IntegerField(null=True)
    partition_rate_limit_max = pw.IntegerField(null=True)
    partition_rate_limit_period_sec = pw.DoubleField(null=True)
    polling_interval_sec = pw.DoubleField(default=1.0)
    created_at = pw.BigIntegerField()
    updated_at = pw.BigIntegerField()
    application_name = pw.TextField(null=True)

    class Meta:
        table_name = "queues"


class WorkflowScheduleRow(_Template):
    schedule_id = pw.TextField(primary_key=True)
    schedule_name = pw.TextField(unique=True)
    workflow_name = pw.TextField()
    workflow_class_name = pw.TextField(null=True)
    schedule = pw.TextField()
    status = pw.TextField(default="ACTIVE")
    context = pw.TextField()
    last_fired_at = pw.TextField(null=True)
    automatic_backfill = pw.BooleanField(default=False)
    cron_timezone = pw.TextField(null=True)
    queue_name = pw.TextField(null=True)
    application_name = pw.TextField(null=True)

    class Meta:
        table_name = "workflow_schedules"


class ExecutorRow(_Template):
    executor_id = pw.TextField()
    application_version = pw.TextField()
    application_name = pw.TextField(null=True)
    hostname = pw.TextField(null=True)
    pid = pw.IntegerField(null=True)
    started_at = pw.BigIntegerField()
    heartbeat_at = pw.BigIntegerField()

    class Meta:
        table_name = "executors"
        primary_key = pw.CompositeKey("executor_id", "application_version")
        indexes = ((("application_name", "application_version", "heartbeat_at"), False),)


class MigrationVersion(_Template):
    version = pw.BigIntegerField(primary_key=True)

    class Meta:
        table_name = "dbos_migrations"


class TransactionOutput(_Template):
    """Lives in the application database, written in the user's transaction."""

    workflow_uuid = pw.TextField()
    function_id = pw.IntegerField()
    output = pw.TextField(null=True)
    error = pw.TextField(null=True)
    txn_id = pw.TextField(null=True)
    txn_snapshot = pw.TextField(null=True)
    executor_id = pw.TextField(null=True)
    function_name = pw.TextField(default="")
    created_at = pw.BigIntegerField()

    class Meta:
        table_name = "transaction_outputs"
        primary_key = pw.CompositeKey("workflow_uuid", "function_id")
        indexes = ((("created_at",), False),)


SYSTEM_MODELS: List[Type[_Template]] = [
    WorkflowStatus,
    OperationOutput,
    Notification,
    WorkflowEvent,
    WorkflowEventHistory,
    Stream,
    ApplicationVersion,
    QueueRow,
    WorkflowScheduleRow,
    ExecutorRow,
    MigrationVersion,
]


class BoundModels:
    """The system models bound to one database and schema."""

    workflow_status: Type[WorkflowStatus]
    operation_outputs: Type[OperationOutput]
    notifications: Type[Notification]
    workflow_events: Type[WorkflowEvent]
    workflow_events_history: Type[WorkflowEventHistory]
    streams: Type[Stream]
    application_versions: Type[ApplicationVersion]
    queues: Type[QueueRow]
    workflow_schedules: Type[WorkflowScheduleRow]
    executors: Type[ExecutorRow]
    dbos_migrations: Type[MigrationVersion]

    def __init__(self, database: pw.Database, schema: Optional[str]) -> None:
        self.by_table: Dict[str, Type[_Template]] = {}
        for template in SYSTEM_MODELS:
            bound = bind_model(template, database, schema)
            self.by_table[template._meta.table_name] = bound
            setattr(self, template._meta.table_name, bound)

    def data_tables(self) -> List[Type[_Template]]:
        """Every table that holds user data (all but the migration version)."""
        return [m for name, m in self.by_table.items() if name != "dbos_migrations"]


def bind_model(
    template: Type[_Template], database: pw.Database, schema: Optional[str]
) -> Type[_Template]:
    meta = type(
        "Meta",
        (),
        {
            "database": database,
            "schema": schema,
            "table_name": template._meta.table_name,
            "primary_key": template._meta.primary_key
            if isinstance(template._meta.primary_key, pw.CompositeKey)
            else None,
        },
    )
    if meta.primary_key is None:  # type: ignore[attr-defined]
        delattr(meta, "primary_key")
    return type(template.__name__, (template,), {"Meta": meta, "__module__": __name__})
