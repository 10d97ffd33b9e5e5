-- Named statements for SQLite. Parameters are :named; times are epoch seconds.

-- name: get_meta
SELECT value FROM treadle_meta WHERE key = :key;

-- name: set_meta
INSERT INTO treadle_meta (key, value) VALUES (:key, :value)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: has_meta_table
SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'treadle_meta';

-- name: save_definition
INSERT INTO workflows (id, name, shape, created_at, version)
VALUES (:id, :name, :shape, :now, :version)
ON CONFLICT (id) DO NOTHING;

-- name: load_definition
SELECT id, name, shape FROM workflows WHERE id = :id;

-- name: list_definitions
SELECT id, name, version, shape, created_at FROM workflows
WHERE (:name IS NULL OR name = :name)
ORDER BY created_at DESC, id;

-- name: insert_run
INSERT INTO runs (id, workflow, definition_id, status, data, cursor, error, waiting_for,
                  wake_at, parent_id, created_at, updated_at, owner, lease_until, token, control,
                  version, forked_from, deadline_at, labels, priority)
VALUES (:id, :workflow, :definition_id, :status, :data, :cursor, NULL, '[]',
        NULL, :parent_id, :now, :now, :owner, :lease_until, 1, NULL, :version, :forked_from,
        :deadline_at, :labels, :priority)
ON CONFLICT (id) DO NOTHING;

-- name: get_run
SELECT * FROM runs WHERE id = :id;

-- name: lock_run
SELECT * FROM runs WHERE id = :id;

-- name: list_runs
SELECT * FROM runs
WHERE (:workflow IS NULL OR workflow = :workflow)
  AND (:status IS NULL OR status = :status)
  AND (:parent_id IS NULL OR parent_id = :parent_id)
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: claim_runs
-- Higher priority first, FIFO (created_at) within one: runnable runs and due timers each
-- walk an index in that order and stop at the limit, then the two are merged. Beginning a
-- debounced run clears its key (later starts make a new run).
UPDATE runs
SET owner = :owner, lease_until = :lease_until, token = token + 1, status = 'running',
    wake_at = NULL, waiting_for = '[]', debounce_key = NULL, updated_at = :now
WHERE id IN (
    SELECT id FROM (
        SELECT * FROM (
            SELECT id, priority, created_at FROM runs INDEXED BY runs_claim_order
            WHERE status IN ('pending', 'running') AND (owner IS NULL OR lease_until < :now)
              AND (definition_id IN (SELECT value FROM json_each(:definitions))
                   OR workflow IN (SELECT value FROM json_each(:upgrades)))
            ORDER BY priority DESC, created_at
            LIMIT :limit
        )
        UNION ALL
        SELECT * FROM (
            SELECT id, priority, created_at FROM runs INDEXED BY runs_status
            WHERE status = 'waiting' AND wake_at <= :due
              AND (definition_id IN (SELECT value FROM json_each(:definitions))
                   OR workflow IN (SELECT value FROM json_each(:upgrades)))
            ORDER BY priority DESC, created_at
            LIMIT :limit
        )
    )
    ORDER BY priority DESC, created_at
    LIMIT :limit
)
RETURNING *;

-- name: renew_leases
UPDATE runs SET lease_until = :lease_until WHERE owner = :owner
RETURNING id, control;

-- name: release_runs
UPDATE runs SET owner = NULL, lease_until = NULL WHERE owner = :owner;

-- name: release_run
UPDATE runs SET owner = NULL, lease_until = NULL WHERE id = :id AND token = :token;

-- name: owners
SELECT DISTINCT owner FROM runs WHERE owner IS NOT NULL;

-- name: save_checkpoint
UPDATE runs
SET status = :status, data = :data, cursor = :cursor, error = :error,
    waiting_for = :waiting_for, wake_at = :wake_at, updated_at = :now,
    owner = CASE WHEN :release THEN NULL ELSE owner END,
    lease_until = CASE WHEN :release THEN NULL ELSE lease_until END,
    control = CASE WHEN :clear_control THEN NULL ELSE control END,
    result = COALESCE(:result, result)
WHERE id = :id AND token = :token
  AND status NOT IN ('completed', 'failed', 'cancelled')  -- an ended run is never written again
RETURNING control;


-- name: insert_event
INSERT INTO events (run_id, at, kind, step, detail) VALUES (:run_id, :at, :kind, :step, :detail);

-- name: history
SELECT run_id, at, kind, step, detail FROM events WHERE run_id = :run_id ORDER BY id;

-- name: insert_inbox
INSERT INTO inbox (run_id, kind, name, payload, created_at)
VALUES (:run_id, :kind, :name, :payload, :now);

-- name: insert_keyed_inbox
-- A message with the sender's idempotency key: no row (and nothing returned) if one has it.
INSERT INTO inbox (run_id, kind, name, payload, created_at, idempotency_key)
VALUES (:run_id, :kind, :name, :payload, :now, :key)
ON CONFLICT (run_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING seq;

-- name: keyed_inbox
-- Whether the run's inbox has a message with this idempotency key (consumed or not).
SELECT seq FROM inbox WHERE run_id = :run_id AND idempotency_key = :key;

-- name: pending_decisions
SELECT payload FROM inbox
WHERE run_id = :run_id AND consumed = 0 AND kind = 'approval' AND name = :name;

-- name: read_inbox
SELECT seq, run_id, kind, name, payload, created_at FROM inbox
WHERE run_id = :run_id AND consumed = 0 AND kind = :kind AND name = :name
ORDER BY seq;

-- name: pending_inbox
SELECT seq, kind, name FROM inbox WHERE run_id = :run_id AND consumed = 0 ORDER BY seq;

-- name: consume_inbox
UPDATE inbox SET consumed = 1 WHERE seq IN (SELECT value FROM json_each(:seqs));

-- name: finished_among
SELECT id FROM runs
WHERE id IN (SELECT value FROM json_each(:ids)) AND status IN ('completed', 'failed', 'cancelled');

-- name: next_wake
SELECT MIN(wake_at) AS wake_at FROM runs INDEXED BY runs_status
WHERE status = 'waiting' AND wake_at IS NOT NULL
  AND (definition_id IN (SELECT value FROM json_each(:definitions))
       OR workflow IN (SELECT value FROM json_each(:upgrades)));

-- name: insert_schedule
INSERT INTO schedules (id, workflow, expression, timezone, input, enabled, options, next_run,
                       last_run, last_run_id, created_at, updated_at)
VALUES (:id, :workflow, :expression, :timezone, :input, :enabled, :options, :next_run,
        NULL, NULL, :now, :now)
ON CONFLICT (id) DO NOTHING;

-- name: get_schedule
SELECT * FROM schedules WHERE id = :id;

-- name: list_schedules
SELECT * FROM schedules ORDER BY id;

-- name: delete_schedule
DELETE FROM schedules WHERE id = :id;

-- name: set_schedule_enabled
UPDATE schedules SET enabled = :enabled, next_run = :next_run, updated_at = :now,
    options = COALESCE(:options, options)
WHERE id = :id;

-- name: advance_schedule
UPDATE schedules
SET next_run = :new_next, last_run = COALESCE(:last_run, last_run),
    last_run_id = COALESCE(:last_run_id, last_run_id), updated_at = :now
WHERE id = :id AND next_run = :expected_next AND enabled = 1;

-- name: make_runnable
UPDATE runs
SET status = CASE WHEN :owner IS NULL THEN 'pending' ELSE 'running' END,
    wake_at = NULL, waiting_for = '[]', updated_at = :now,
    owner = :owner, lease_until = :lease_until, token = token + 1
WHERE id = :id
RETURNING *;

-- name: set_control
UPDATE runs SET control = :control WHERE id = :id;

-- name: park
UPDATE runs
SET status = 'paused', control = NULL, owner = NULL, lease_until = NULL, updated_at = :now
WHERE id = :id;

-- name: count_unfinished
SELECT status, COUNT(*) AS n FROM runs INDEXED BY runs_status
WHERE status IN ('pending', 'running', 'waiting', 'paused', 'held')
GROUP BY status;

-- name: save_progress
-- The common checkpoint: a running run stays running (no indexed column changes).
UPDATE runs SET data = :data, cursor = :cursor, updated_at = :now
WHERE id = :id AND token = :token
  AND status NOT IN ('completed', 'failed', 'cancelled')  -- an ended run is never written again
RETURNING control;

-- name: migrate_run
UPDATE runs
SET definition_id = :definition_id, version = :version, cursor = :cursor,
    waiting_for = :waiting_for, updated_at = :now
WHERE id = :id AND token = :token
RETURNING *;

-- name: set_definition
UPDATE runs SET definition_id = :definition_id, version = :version
WHERE id = :id AND token = :token;

-- name: waiting_by_kind
-- WAITING runs per kind of wait key ("signal:go" is a signal); a run waiting for two kinds counts
-- in both.
SELECT substr(j.value, 1, instr(j.value, ':') - 1) AS kind, COUNT(DISTINCT r.id) AS n
FROM runs r INDEXED BY runs_status, json_each(r.waiting_for) j
WHERE r.status = 'waiting'
GROUP BY kind;

-- name: oldest_runnable
-- Since when the oldest runnable run waits for an engine: a PENDING run since it became pending,
-- a WAITING one since its timer came due.
SELECT (SELECT MIN(updated_at) FROM runs INDEXED BY runs_status
        WHERE status = 'pending' AND (owner IS NULL OR lease_until < :now)) AS pending_since,
       (SELECT MIN(wake_at) FROM runs INDEXED BY runs_status
        WHERE status = 'waiting' AND wake_at <= :now) AS due_since;

-- name: set_run_trace
UPDATE runs SET trace = :trace WHERE id = :id;

-- name: run_values
SELECT key, part, content FROM run_values WHERE run_id = :run_id ORDER BY key, part;

-- name: put_run_value
INSERT INTO run_values (run_id, key, part, content) VALUES (:run_id, :key, :part, :content)
ON CONFLICT (run_id, key, part) DO UPDATE SET content = excluded.content;

-- name: delete_run_values
-- The rows of one key from a part on, or (key NULL) every row of the run.
DELETE FROM run_values
WHERE run_id = :run_id AND (:key IS NULL OR (key = :key AND part >= :part));
