-- Database-backed queues (DBOS.register_queue): every worker re-reads its
-- queue's row, so a change takes effect without a restart.
CREATE TABLE queues (
    queue_id TEXT NOT NULL PRIMARY KEY DEFAULT {{random_id}},
    name TEXT NOT NULL UNIQUE,
    concurrency INTEGER,
    worker_concurrency INTEGER,
    rate_limit_max INTEGER,
    rate_limit_period_sec DOUBLE PRECISION,
    priority_enabled {{boolean}} NOT NULL DEFAULT FALSE,
    partition_queue {{boolean}} NOT NULL DEFAULT FALSE,
    partition_concurrency INTEGER,
    partition_worker_concurrency INTEGER,
    partition_rate_limit_max INTEGER,
    partition_rate_limit_period_sec DOUBLE PRECISION,
    polling_interval_sec DOUBLE PRECISION NOT NULL DEFAULT 1.0,
    created_at BIGINT NOT NULL DEFAULT {{now_ms}},
    updated_at BIGINT NOT NULL DEFAULT {{now_ms}},
    application_name TEXT
);

CREATE INDEX idx_workflow_status_queue_started
    ON workflow_status (queue_name, started_at_epoch_ms)
    WHERE started_at_epoch_ms IS NOT NULL;
