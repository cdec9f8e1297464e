-- System tables of DBOS Transact 2.x. On PostgreSQL they land in the
-- configured schema. The {{tokens}} are rendered in each backend's dialect.

CREATE TABLE workflow_status (
    workflow_uuid TEXT NOT NULL PRIMARY KEY,
    status TEXT,
    name TEXT,
    authenticated_user TEXT,
    assumed_role TEXT,
    authenticated_roles TEXT,
    request TEXT,
    inputs TEXT,
    output TEXT,
    error TEXT,
    executor_id TEXT,
    created_at BIGINT NOT NULL DEFAULT {{now_ms}},
    updated_at BIGINT NOT NULL DEFAULT {{now_ms}},
    application_version TEXT,
    application_id TEXT,
    class_name VARCHAR(255),
    config_name VARCHAR(255),
    recovery_attempts BIGINT DEFAULT 0,
    queue_name TEXT,
    workflow_timeout_ms BIGINT,
    workflow_deadline_epoch_ms BIGINT,
    started_at_epoch_ms BIGINT,
    deduplication_id TEXT,
    priority INTEGER NOT NULL DEFAULT 0,
    queue_partition_key TEXT,
    forked_from TEXT,
    was_forked_from {{boolean}} NOT NULL DEFAULT FALSE,
    owner_xid TEXT,
    parent_workflow_id TEXT,
    serialization TEXT,
    delay_until_epoch_ms BIGINT,
    rate_limited {{boolean}} NOT NULL DEFAULT FALSE,
    completed_at BIGINT,
    attributes TEXT,
    schedule_name TEXT,
    debounce_deadline_epoch_ms BIGINT,
    is_debounced {{boolean}} NOT NULL DEFAULT FALSE,
    application_name TEXT
);

CREATE INDEX workflow_status_created_at_index ON workflow_status (created_at);
CREATE INDEX idx_workflow_status_pending ON workflow_status (created_at)
    WHERE status = 'PENDING';
CREATE INDEX idx_workflow_status_delayed ON workflow_status (delay_until_epoch_ms)
    WHERE status = 'DELAYED';
CREATE INDEX idx_workflow_status_failed ON workflow_status (status, created_at)
    WHERE status IN ('ERROR', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED');
CREATE INDEX idx_workflow_status_in_flight
    ON workflow_status (queue_name, status, priority, created_at)
    WHERE status IN ('ENQUEUED', 'PENDING');
CREATE INDEX idx_workflow_status_partition_dequeue
    ON workflow_status (queue_name, status, queue_partition_key, priority, created_at, workflow_uuid)
    WHERE status IN ('ENQUEUED', 'PENDING') AND queue_partition_key IS NOT NULL;
CREATE INDEX idx_workflow_status_rate_limited ON workflow_status (queue_name, started_at_epoch_ms)
    WHERE rate_limited;
CREATE INDEX idx_workflow_status_completed_at ON workflow_status (completed_at)
    WHERE completed_at IS NOT NULL;
CREATE INDEX idx_workflow_status_forked_from ON workflow_status (forked_from)
    WHERE forked_from IS NOT NULL;
CREATE INDEX idx_workflow_status_parent_workflow_id ON workflow_status (parent_workflow_id)
    WHERE parent_workflow_id IS NOT NULL;
CREATE UNIQUE INDEX uq_workflow_status_dedup_id ON workflow_status (queue_name, deduplication_id)
    WHERE deduplication_id IS NOT NULL;

CREATE TABLE operation_outputs (
    workflow_uuid TEXT NOT NULL
        REFERENCES workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE,
    function_id INTEGER NOT NULL,
    function_name TEXT NOT NULL DEFAULT '',
    output TEXT,
    error TEXT,
    child_workflow_id TEXT,
    started_at_epoch_ms BIGINT,
    completed_at_epoch_ms BIGINT,
    serialization TEXT,
    application_name TEXT,
    PRIMARY KEY (workflow_uuid, function_id)
);
CREATE INDEX idx_operation_outputs_completed_at_function_name
    ON operation_outputs (completed_at_epoch_ms, function_name);

CREATE TABLE notifications (
    message_uuid TEXT NOT NULL PRIMARY KEY DEFAULT {{random_id}},
    destination_uuid TEXT NOT NULL
        REFERENCES workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE,
    topic TEXT,
    message TEXT NOT NULL,
    created_at_epoch_ms BIGINT NOT NULL DEFAULT {{now_ms}},
    serialization TEXT,
    consumed {{boolean}} NOT NULL DEFAULT FALSE
);
CREATE INDEX idx_workflow_topic ON notifications (destination_uuid, topic);

CREATE TABLE workflow_events (
    workflow_uuid TEXT NOT NULL
        REFERENCES workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    serialization TEXT,
    PRIMARY KEY (workflow_uuid, key)
);

CREATE TABLE workflow_events_history (
    workflow_uuid TEXT NOT NULL
        REFERENCES workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE,
    function_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    serialization TEXT,
    PRIMARY KEY (workflow_uuid, key, function_id)
);

CREATE TABLE streams (
    workflow_uuid TEXT NOT NULL
        REFERENCES workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    "offset" INTEGER NOT NULL,
    function_id INTEGER NOT NULL DEFAULT 0,
    serialization TEXT,
    PRIMARY KEY (workflow_uuid, key, "offset")
);

CREATE TABLE application_versions (
    version_id TEXT NOT NULL PRIMARY KEY DEFAULT {{random_id}},
    version_name TEXT NOT NULL UNIQUE,
    version_timestamp BIGINT NOT NULL DEFAULT {{now_ms}},
    created_at BIGINT NOT NULL DEFAULT {{now_ms}},
    application_name TEXT
);
