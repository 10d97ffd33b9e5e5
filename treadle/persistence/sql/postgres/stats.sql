-- Aggregates of one workflow's runs for the dashboard's overview page (treadle/persistence/_stats.py).
-- A bucket is the run's created_at in %(width)s-second steps since %(since)s.

-- name: stats_by_bucket
SELECT floor(extract(epoch FROM created_at - %(since)s) / %(width)s)::int AS bucket, status,
       COUNT(*) AS n
FROM runs
WHERE workflow = %(workflow)s AND created_at >= %(since)s
GROUP BY bucket, status;

-- name: stats_by_definition
SELECT definition_id, version, COUNT(*) AS n, MAX(created_at) AS last_at
FROM runs
WHERE workflow = %(workflow)s AND created_at >= %(since)s
GROUP BY definition_id, version;

-- name: stats_durations
SELECT extract(epoch FROM updated_at - created_at)::float8 AS seconds FROM runs
WHERE workflow = %(workflow)s AND created_at >= %(since)s
  AND status IN ('completed', 'failed', 'cancelled')
ORDER BY created_at DESC LIMIT %(limit)s;

-- name: stats_errors
SELECT error, COUNT(*) AS n FROM runs
WHERE workflow = %(workflow)s AND created_at >= %(since)s AND status = 'failed'
  AND error IS NOT NULL
GROUP BY error ORDER BY n DESC, error LIMIT %(limit)s;

-- name: stats_steps
SELECT e.step AS step, e.detail AS detail
FROM runs AS r JOIN events AS e ON e.run_id = r.id
WHERE r.workflow = %(workflow)s AND r.created_at >= %(since)s AND e.kind = 'step_completed'
ORDER BY r.created_at DESC LIMIT %(limit)s;
