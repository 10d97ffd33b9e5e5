-- Retention for PostgreSQL: finding finished runs to delete, deleting a run whole. A run can be
-- deleted when it has ended (one of statuses), was last changed before the cutoff, its parent
-- has ended or is gone (an unfinished parent reads a child's result) and none of its children
-- is unfinished. Engines that prune at once skip each other's rows (SKIP LOCKED); autovacuum
-- gives the space of deleted rows back to new ones.

-- name: prunable_runs
SELECT r.id FROM runs AS r
WHERE r.status = ANY(%(statuses)s::text[]) AND r.updated_at < %(before)s
  AND r.status IN ('completed', 'failed', 'cancelled')
  AND (%(workflows)s::text[] IS NULL OR r.workflow = ANY(%(workflows)s::text[]))
  AND (r.parent_id IS NULL OR NOT EXISTS (
      SELECT 1 FROM runs AS p WHERE p.id = r.parent_id
        AND p.status NOT IN ('completed', 'failed', 'cancelled')))
  AND NOT EXISTS (
      SELECT 1 FROM runs AS c WHERE c.parent_id = r.id
        AND c.status NOT IN ('completed', 'failed', 'cancelled'))
LIMIT %(limit)s
FOR UPDATE OF r SKIP LOCKED;

-- name: count_prunable
SELECT COUNT(*) AS n FROM runs AS r
WHERE r.status = ANY(%(statuses)s::text[]) AND r.updated_at < %(before)s
  AND r.status IN ('completed', 'failed', 'cancelled')
  AND (%(workflows)s::text[] IS NULL OR r.workflow = ANY(%(workflows)s::text[]))
  AND (r.parent_id IS NULL OR NOT EXISTS (
      SELECT 1 FROM runs AS p WHERE p.id = r.parent_id
        AND p.status NOT IN ('completed', 'failed', 'cancelled')))
  AND NOT EXISTS (
      SELECT 1 FROM runs AS c WHERE c.parent_id = r.id
        AND c.status NOT IN ('completed', 'failed', 'cancelled'));

-- name: children_of
SELECT id, status FROM runs WHERE parent_id = ANY(%(ids)s::text[]) FOR UPDATE;

-- name: delete_finished_runs
DELETE FROM runs
WHERE id = ANY(%(ids)s::text[]) AND status IN ('completed', 'failed', 'cancelled')
RETURNING id;

-- name: delete_events_of
DELETE FROM events WHERE run_id = ANY(%(ids)s::text[]);

-- name: delete_inbox_of
DELETE FROM inbox WHERE run_id = ANY(%(ids)s::text[]);

-- name: delete_labels_of
DELETE FROM run_labels WHERE run_id = ANY(%(ids)s::text[]);

-- name: delete_values_of
DELETE FROM run_values WHERE run_id = ANY(%(ids)s::text[]);

-- name: unlink_children
-- The runs that outlive their deleted parent keep no link to it. A child row another
-- transaction holds (another pruner deleting it) is skipped, not waited for: no deadlock.
UPDATE runs SET parent_id = NULL
WHERE id IN (SELECT id FROM runs WHERE parent_id = ANY(%(ids)s::text[]) FOR UPDATE SKIP LOCKED);

-- name: reclaim_space
-- Nothing to do: autovacuum makes the space of deleted rows reusable.
SELECT 1;

-- name: free_pages
SELECT 0 AS pages;
