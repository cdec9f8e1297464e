-- Database-backed schedules (DBOS.create_schedule, apply_schedules): every
-- process's scheduler reads them on each poll and fires their ticks; the
-- ticks' deterministic workflow IDs make each fire once across processes.
CREATE TABLE workflow_schedules (
    schedule_id TEXT NOT NULL PRIMARY KEY DEFAULT {{random_id}},
    schedule_name TEXT NOT NULL UNIQUE,
    workflow_name TEXT NOT NULL,
    workflow_class_name TEXT,
    schedule TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'ACTIVE',
    context TEXT NOT NULL,
    last_fired_at TEXT,
    automatic_backfill {{boolean}} NOT NULL DEFAULT FALSE,
    cron_timezone TEXT,
    queue_name TEXT,
    application_name TEXT
);
