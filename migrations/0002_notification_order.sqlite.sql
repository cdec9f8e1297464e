-- See the PostgreSQL file: SQLite orders by rowid; the column exists so that
-- both backends have the same shape.
ALTER TABLE notifications ADD COLUMN seq INTEGER;
CREATE INDEX idx_notifications_pending ON notifications (destination_uuid, topic)
    WHERE consumed = 0;
