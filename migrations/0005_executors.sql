-- Heartbeats of launched processes, one row per executor ID and application
-- version. A row whose heartbeat is older than the configured limit belongs
-- to an executor presumed dead: a live executor of the same application and
-- version deletes the row and takes over its PENDING workflows in the same
-- transaction, so exactly one claimant wins.
CREATE TABLE executors (
    executor_id TEXT NOT NULL,
    application_version TEXT NOT NULL,
    application_name TEXT,
    hostname TEXT,
    pid INTEGER,
    started_at BIGINT NOT NULL DEFAULT {{now_ms}},
    heartbeat_at BIGINT NOT NULL,
    PRIMARY KEY (executor_id, application_version)
);

CREATE INDEX idx_executors_heartbeat
    ON executors (application_name, application_version, heartbeat_at);
