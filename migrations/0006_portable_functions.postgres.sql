-- SQL functions that enqueue a workflow and send a message from plain SQL
-- (another language, a psql session, an application's own transaction: the
-- outbox pattern), with the signatures DBOS Transact 2.31 creates. Both
-- write portable JSON, which any DBOS SDK reads. They run in the caller's
-- transaction: nothing is enqueued or sent unless it commits.
--
-- The migration runs with search_path set to the system schema, so both
-- functions are created there; each then runs with that schema first and
-- pg_catalog and pg_temp after it (set below, by name), so a caller's own
-- search_path can neither hide the tables nor plant look-alikes.

CREATE FUNCTION enqueue_workflow(
    workflow_name TEXT,
    queue_name TEXT,
    positional_args JSON[] DEFAULT ARRAY[]::JSON[],
    named_args JSON DEFAULT '{}'::JSON,
    class_name TEXT DEFAULT NULL,
    config_name TEXT DEFAULT NULL,
    workflow_id TEXT DEFAULT NULL,
    app_version TEXT DEFAULT NULL,
    timeout_ms BIGINT DEFAULT NULL,
    deadline_epoch_ms BIGINT DEFAULT NULL,
    deduplication_id TEXT DEFAULT NULL,
    priority INT4 DEFAULT NULL,
    queue_partition_key TEXT DEFAULT NULL,
    authenticated_user TEXT DEFAULT NULL,
    authenticated_roles TEXT DEFAULT NULL,
    delay_until_epoch_ms BIGINT DEFAULT NULL,
    application_name TEXT DEFAULT NULL
) RETURNS TEXT LANGUAGE plpgsql AS $fn$
DECLARE
    new_id TEXT := COALESCE(workflow_id, gen_random_uuid()::TEXT);
    stamp BIGINT := (EXTRACT(epoch FROM clock_timestamp()) * 1000)::BIGINT;
BEGIN
    IF workflow_name IS NULL OR workflow_name = '' THEN
        RAISE EXCEPTION 'Workflow name cannot be null or empty';
    END IF;
    IF queue_name IS NULL OR queue_name = '' THEN
        RAISE EXCEPTION 'Queue name cannot be null or empty';
    END IF;
    IF named_args IS NOT NULL AND json_typeof(named_args) <> 'object' THEN
        RAISE EXCEPTION 'Named args must be a JSON object';
    END IF;
    IF workflow_id = '' THEN
        RAISE EXCEPTION 'Workflow ID cannot be an empty string if provided.';
    END IF;
    IF delay_until_epoch_ms < 0 THEN
        RAISE EXCEPTION 'delay_until_epoch_ms must be >= 0';
    END IF;

    -- A workflow ID enqueued before is not enqueued again: its row stays as it is.
    INSERT INTO workflow_status AS w (
        workflow_uuid, status, name, class_name, config_name, queue_name, inputs,
        deduplication_id, priority, queue_partition_key, application_version,
        created_at, updated_at, recovery_attempts, workflow_timeout_ms,
        workflow_deadline_epoch_ms, owner_xid, serialization, authenticated_user,
        authenticated_roles, delay_until_epoch_ms, application_name
    ) VALUES (
        new_id,
        CASE WHEN delay_until_epoch_ms IS NULL THEN 'ENQUEUED' ELSE 'DELAYED' END,
        workflow_name, class_name, config_name, queue_name,
        json_build_object('positionalArgs', COALESCE(positional_args, ARRAY[]::JSON[]),
                          'namedArgs', COALESCE(named_args, '{}'::JSON))::TEXT,
        deduplication_id, COALESCE(priority, 0), queue_partition_key, app_version,
        stamp, stamp, 0, timeout_ms,
        deadline_epoch_ms, gen_random_uuid()::TEXT, 'portable_json', authenticated_user,
        authenticated_roles, delay_until_epoch_ms, application_name
    )
    ON CONFLICT (workflow_uuid) DO UPDATE SET updated_at = EXCLUDED.updated_at;
    RETURN new_id;
EXCEPTION
    WHEN unique_violation THEN
        RAISE EXCEPTION 'DBOS queue duplicated'
            USING ERRCODE = 'unique_violation',
                  DETAIL = format('Workflow %s with queue %s and deduplication ID %s already exists',
                                  new_id, queue_name, deduplication_id);
END;
$fn$;

CREATE FUNCTION send_message(
    destination_id TEXT,
    message JSON,
    topic TEXT DEFAULT NULL,
    message_id TEXT DEFAULT NULL
) RETURNS VOID LANGUAGE plpgsql AS $fn$
DECLARE
    stored_topic TEXT := COALESCE(topic, '__null__topic__');
BEGIN
    -- A message ID sent before is not sent again.
    INSERT INTO notifications (destination_uuid, topic, message, message_uuid, serialization)
    VALUES (destination_id, stored_topic, message::TEXT,
            COALESCE(message_id, gen_random_uuid()::TEXT), 'portable_json')
    ON CONFLICT (message_uuid) DO NOTHING;
    -- Wakes a waiting recv at once, on COMMIT (the key and channel of
    -- dbos/_sysdb/notifications.py: message_key, NOTIFY_CHANNEL).
    PERFORM pg_notify('dbos_notify', 'msg::' || destination_id || '::' || stored_topic);
EXCEPTION
    WHEN foreign_key_violation THEN
        RAISE EXCEPTION 'DBOS non-existent workflow'
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = format('Destination workflow %s does not exist', destination_id);
END;
$fn$;

DO $harden$
BEGIN
    EXECUTE format('ALTER FUNCTION %I.enqueue_workflow(TEXT, TEXT, JSON[], JSON, TEXT, TEXT, TEXT, TEXT, '
                   'BIGINT, BIGINT, TEXT, INT4, TEXT, TEXT, TEXT, BIGINT, TEXT) '
                   'SET search_path = %I, pg_catalog, pg_temp', current_schema(), current_schema());
    EXECUTE format('ALTER FUNCTION %I.send_message(TEXT, JSON, TEXT, TEXT) '
                   'SET search_path = %I, pg_catalog, pg_temp', current_schema(), current_schema());
END
$harden$;
