-- Indexes for listing workflows as an operator's dashboard does: newest
-- first, a page at a time, filtered by status, by name, or both. Each ends
-- with the listing's order (created_at, then workflow_uuid), so the newest
-- page is read off the index in order, with no sort, however many rows
-- match; a filter that matches few, old rows no longer scans the table.
-- They replace the index on created_at alone, which the first one covers.
CREATE INDEX idx_workflow_status_created_at_uuid ON workflow_status (created_at, workflow_uuid);
CREATE INDEX idx_workflow_status_status_created_at ON workflow_status (status, created_at, workflow_uuid);
CREATE INDEX idx_workflow_status_name_status_created_at
    ON workflow_status (name, status, created_at, workflow_uuid);
DROP INDEX workflow_status_created_at_index;
