-- Retention for SQLite: finding finished runs to delete, deleting a run whole, giving the space
-- back. A run can be deleted when it has ended (one of :statuses), was last changed before
-- :before, its parent has ended or is gone (an unfinished parent reads a child's result) and
-- none of its children is unfinished.

-- name: prunable_runs
SELECT r.id FROM runs AS r INDEXED BY runs_finished
WHERE r.status IN (SELECT value FROM json_each(:statuses)) AND r.updated_at < :before
  AND r.status IN ('completed', 'failed', 'cancelled')
  AND (:workflows IS NULL OR r.workflow IN (SELECT value FROM json_each(:workflows)))
  AND (r.parent_id IS NULL OR NOT EXISTS (
      SELECT 1 FROM runs AS p WHERE p.id = r.parent_id
        AND p.status NOT IN ('completed', 'failed', 'cancelled')))
  AND NOT EXISTS (
      SELECT 1 FROM runs AS c WHERE c.parent_id = r.id
        AND c.status NOT IN ('completed', 'failed', 'cancelled'))
LIMIT :limit;

-- name: count_prunable
SELECT COUNT(*) AS n FROM runs AS r INDEXED BY runs_finished
WHERE r.status IN (SELECT value FROM json_each(:statuses)) AND r.updated_at < :before
  AND r.status IN ('completed', 'failed', 'cancelled')
  AND (:workflows IS NULL OR r.workflow IN (SELECT value FROM json_each(:workflows)))
  AND (r.parent_id IS NULL OR NOT EXISTS (
      SELECT 1 FROM runs AS p WHERE p.id = r.parent_id
        AND p.status NOT IN ('completed', 'failed', 'cancelled')))
  AND NOT EXISTS (
      SELECT 1 FROM runs AS c WHERE c.parent_id = r.id
        AND c.status NOT IN ('completed', 'failed', 'cancelled'));

-- name: children_of
SELECT id, status FROM runs WHERE parent_id IN (SELECT value FROM json_each(:ids));

-- name: delete_finished_runs
-- By primary key: '+status' keeps the planner from scanning runs_finished instead.
DELETE FROM runs
WHERE id IN (SELECT value FROM json_each(:ids)) AND +status IN ('completed', 'failed', 'cancelled')
RETURNING id;

-- name: delete_events_of
DELETE FROM events WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: delete_inbox_of
DELETE FROM inbox WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: delete_labels_of
DELETE FROM run_labels WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: delete_values_of
DELETE FROM run_values WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: unlink_children
-- The runs that outlive their deleted parent keep no link to it.
UPDATE runs SET parent_id = NULL WHERE parent_id IN (SELECT value FROM json_each(:ids));

-- name: reclaim_space
-- Gives up to 500 free pages back to the file system (databases made with
-- auto_vacuum=INCREMENTAL, as treadle makes them; nothing otherwise: see 'treadle db vacuum').
PRAGMA incremental_vacuum(500);

-- name: free_pages
SELECT freelist_count AS pages FROM pragma_freelist_count();
