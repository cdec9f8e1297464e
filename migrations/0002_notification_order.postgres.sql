-- Messages are received in the order they were sent. created_at_epoch_ms has
-- millisecond ties, so PostgreSQL gets a sequence to break them (SQLite uses
-- the table's rowid, which already grows with every insert).
CREATE SEQUENCE notifications_seq;
ALTER TABLE notifications ADD COLUMN seq BIGINT DEFAULT nextval('notifications_seq');
CREATE INDEX idx_notifications_pending ON notifications (destination_uuid, topic, seq)
    WHERE NOT consumed;
