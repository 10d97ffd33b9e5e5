-- Searching runs (RunFilter): three statements with the same conditions, each entered through
-- the index that fits the most selective filter given (the search script picks one). Every
-- condition but the driving one is optional (NULL: any); the creation-time range and the
-- cursor are always bound (lo <= created_at, (created_at, id) < (hi, hi_id)), so the scan
-- starts at the cursor. Newest first; ties by id, descending.

-- name: search_filter
-- The conditions every search shares (every one but the driving one is optional).
  AND (%(status)s::text IS NULL OR r.status = %(status)s::text)
  AND (%(version)s::text IS NULL OR r.version = %(version)s::text)
  AND (%(parent_id)s::text IS NULL OR r.parent_id = %(parent_id)s::text)
  AND (%(updated_after)s::timestamptz IS NULL OR r.updated_at >= %(updated_after)s::timestamptz)
  AND (%(updated_before)s::timestamptz IS NULL OR r.updated_at < %(updated_before)s::timestamptz)
  AND (%(error)s::text IS NULL OR strpos(lower(r.error), %(error)s::text) > 0)
  -- The run's own JSON of its labels, checked row by row (a subquery on run_labels here gets
  -- planned as a hash of the whole table).
  AND (%(labels)s::jsonb = '{}'::jsonb OR r.labels::jsonb @> %(labels)s::jsonb)
  AND r.created_at >= %(lo)s AND r.created_at <= %(hi)s
  AND (r.created_at < %(hi)s OR r.id COLLATE "C" < %(hi_id)s)
ORDER BY r.created_at DESC, r.id COLLATE "C" DESC
LIMIT %(limit)s;

-- name: search_runs
SELECT r.* FROM runs AS r
WHERE true
-- include: search_filter

-- name: search_runs_by_workflow
SELECT r.* FROM runs AS r
WHERE r.workflow = %(workflow)s::text
-- include: search_filter

-- name: search_runs_by_label
SELECT r.* FROM run_labels AS first JOIN runs AS r ON r.id = first.run_id
WHERE first.key = %(label_key)s::text AND first.value = %(label_value)s::text
  AND (%(workflow)s::text IS NULL OR r.workflow = %(workflow)s::text)
-- include: search_filter

-- name: count_label
-- How many runs have the label, counted up to :most (a covering scan of the primary key).
SELECT count(*) AS n FROM (
    SELECT 1 FROM run_labels WHERE key = %(label_key)s AND value = %(label_value)s LIMIT %(most)s
) AS found;

-- name: delete_labels
DELETE FROM run_labels WHERE run_id = %(run_id)s;

-- name: insert_label
INSERT INTO run_labels (run_id, key, value) VALUES (%(run_id)s, %(key)s, %(value)s)
ON CONFLICT DO NOTHING;

-- name: set_labels
UPDATE runs SET labels = %(labels)s WHERE id = %(id)s AND token = %(token)s;
