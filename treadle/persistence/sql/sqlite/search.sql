-- Searching runs (RunFilter): three statements with the same conditions, each entered through
-- the index that fits the most selective filter given (the search script picks one). Every
-- condition but the driving one is optional (NULL: any); the creation-time range and the
-- cursor are always bound (lo <= created_at, (created_at, id) < (hi, hi_id)), so the scan
-- starts at the cursor. Newest first; ties by id, descending.

-- name: search_filter
-- The conditions every search shares (every one but the driving one is optional).
  AND (:status IS NULL OR r.status = :status)
  AND (:version IS NULL OR r.version = :version)
  AND (:parent_id IS NULL OR r.parent_id = :parent_id)
  AND (:updated_after IS NULL OR r.updated_at >= :updated_after)
  AND (:updated_before IS NULL OR r.updated_at < :updated_before)
  AND (:error IS NULL OR instr(lower(r.error), :error) > 0)
  AND NOT EXISTS (
      SELECT 1 FROM json_each(:labels) AS wanted
      WHERE NOT EXISTS (
          SELECT 1 FROM run_labels AS l
          WHERE l.key = wanted.key AND l.value = wanted.value AND l.run_id = r.id))
  AND r.created_at >= :lo AND r.created_at <= :hi AND (r.created_at < :hi OR r.id < :hi_id)
ORDER BY r.created_at DESC, r.id DESC
LIMIT :limit;

-- name: search_runs
SELECT r.* FROM runs AS r INDEXED BY runs_created
WHERE 1 = 1
-- include: search_filter

-- name: search_runs_by_workflow
SELECT r.* FROM runs AS r INDEXED BY runs_workflow
WHERE r.workflow = :workflow
-- include: search_filter

-- name: search_runs_by_label
-- CROSS JOIN makes SQLite read the label's rows first (its primary key is (key, value, run_id)).
SELECT r.* FROM run_labels AS first CROSS JOIN runs AS r
WHERE first.key = :label_key AND first.value = :label_value AND r.id = first.run_id
  AND (:workflow IS NULL OR r.workflow = :workflow)
-- include: search_filter

-- name: count_label
-- How many runs have the label, counted up to :most (a covering scan of the primary key).
SELECT count(*) AS n FROM (
    SELECT 1 FROM run_labels WHERE key = :label_key AND value = :label_value LIMIT :most
) AS found;

-- name: delete_labels
DELETE FROM run_labels WHERE run_id = :run_id;

-- name: insert_label
INSERT INTO run_labels (run_id, key, value) VALUES (:run_id, :key, :value)
ON CONFLICT DO NOTHING;

-- name: set_labels
UPDATE runs SET labels = :labels WHERE id = :id AND token = :token;
