-- Aggregates of one workflow's runs for the dashboard's overview page (treadle/persistence/_stats.py).
-- :since and :width are epoch seconds; a bucket is the run's created_at in :width steps since :since.

-- name: stats_by_bucket
SELECT CAST((created_at - :since) / :width AS INTEGER) AS bucket, status, COUNT(*) AS n
FROM runs INDEXED BY runs_workflow
WHERE workflow = :workflow AND created_at >= :since
GROUP BY bucket, status;

-- name: stats_by_definition
SELECT definition_id, version, COUNT(*) AS n, MAX(created_at) AS last_at
FROM runs INDEXED BY runs_workflow
WHERE workflow = :workflow AND created_at >= :since
GROUP BY definition_id, version;

-- name: stats_durations
SELECT updated_at - created_at AS seconds FROM runs INDEXED BY runs_workflow
WHERE workflow = :workflow AND created_at >= :since
  AND status IN ('completed', 'failed', 'cancelled')
ORDER BY created_at DESC LIMIT :limit;

-- name: stats_errors
SELECT error, COUNT(*) AS n FROM runs INDEXED BY runs_workflow
WHERE workflow = :workflow AND created_at >= :since AND status = 'failed' AND error IS NOT NULL
GROUP BY error ORDER BY n DESC, error LIMIT :limit;

-- name: stats_steps
SELECT e.step AS step, e.detail AS detail
FROM runs AS r INDEXED BY runs_workflow JOIN events AS e ON e.run_id = r.id
WHERE r.workflow = :workflow AND r.created_at >= :since AND e.kind = 'step_completed'
ORDER BY r.created_at DESC LIMIT :limit;
