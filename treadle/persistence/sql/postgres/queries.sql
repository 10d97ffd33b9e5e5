-- Named statements for PostgreSQL. Parameters are %(name)s; times are timestamptz; lists arrive
-- as arrays. Statements that read a row in order to change it lock it (FOR UPDATE); the claim
-- skips rows that another engine is claiming (FOR UPDATE SKIP LOCKED).

-- name: get_meta
SELECT value FROM treadle_meta WHERE key = %(key)s;

-- name: set_meta
INSERT INTO treadle_meta (key, value) VALUES (%(key)s, %(value)s)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: has_meta_table
SELECT 1 FROM pg_catalog.pg_tables
WHERE schemaname = current_schema() AND tablename = 'treadle_meta';

-- name: save_definition
INSERT INTO workflows (id, name, shape, created_at, version)
VALUES (%(id)s, %(name)s, %(shape)s, %(now)s, %(version)s)
ON CONFLICT (id) DO NOTHING;

-- name: load_definition
SELECT id, name, shape FROM workflows WHERE id = %(id)s;

-- name: list_definitions
SELECT id, name, version, shape, created_at FROM workflows
WHERE (%(name)s::text IS NULL OR name = %(name)s::text)
ORDER BY created_at DESC, id;

-- name: insert_run
INSERT INTO runs (id, workflow, definition_id, status, data, cursor, error, waiting_for,
                  wake_at, parent_id, created_at, updated_at, owner, lease_until, token, control,
                  version, forked_from, deadline_at, labels, priority)
VALUES (%(id)s, %(workflow)s, %(definition_id)s, %(status)s, %(data)s, %(cursor)s, NULL, '[]',
        NULL, %(parent_id)s, %(now)s, %(now)s, %(owner)s, %(lease_until)s, 1, NULL,
        %(version)s, %(forked_from)s, %(deadline_at)s, %(labels)s, %(priority)s)
ON CONFLICT (id) DO NOTHING;

-- name: get_run
SELECT * FROM runs WHERE id = %(id)s;

-- name: lock_run
SELECT * FROM runs WHERE id = %(id)s FOR UPDATE;

-- name: list_runs
SELECT * FROM runs
WHERE (%(workflow)s::text IS NULL OR workflow = %(workflow)s::text)
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(parent_id)s::text IS NULL OR parent_id = %(parent_id)s::text)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: claim_runs
-- Higher priority first, FIFO (created_at) within one: runnable runs and due timers each
-- walk an index in that order and stop at the limit, then the two are merged. Beginning a
-- debounced run clears its key (later starts make a new run).
WITH pending AS (
    SELECT id, priority, created_at FROM runs
    WHERE status IN ('pending', 'running') AND (owner IS NULL OR lease_until < %(now)s)
      AND (definition_id = ANY(%(definitions)s::text[]) OR workflow = ANY(%(upgrades)s::text[]))
    ORDER BY priority DESC, created_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), due AS (
    SELECT id, priority, created_at FROM runs
    WHERE status = 'waiting' AND wake_at <= %(due)s
      AND (definition_id = ANY(%(definitions)s::text[]) OR workflow = ANY(%(upgrades)s::text[]))
    ORDER BY priority DESC, created_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE runs
SET owner = %(owner)s, lease_until = %(lease_until)s, token = token + 1, status = 'running',
    wake_at = NULL, waiting_for = '[]', debounce_key = NULL, updated_at = %(now)s
WHERE id IN (
    SELECT id FROM (SELECT * FROM pending UNION ALL SELECT * FROM due) AS runnable
    ORDER BY priority DESC, created_at
    LIMIT %(limit)s
)
RETURNING *;

-- name: renew_leases
-- A run whose row is locked right now (being checkpointed) is renewed on the next heartbeat:
-- waiting for it here could deadlock with a group commit that holds it.
UPDATE runs SET lease_until = %(lease_until)s
WHERE id IN (SELECT id FROM runs WHERE owner = %(owner)s FOR UPDATE SKIP LOCKED)
  AND owner = %(owner)s
RETURNING id, control;

-- name: release_runs
UPDATE runs SET owner = NULL, lease_until = NULL WHERE owner = %(owner)s;

-- name: release_run
UPDATE runs SET owner = NULL, lease_until = NULL WHERE id = %(id)s AND token = %(token)s;

-- name: owners
SELECT DISTINCT owner FROM runs WHERE owner IS NOT NULL;

-- name: save_checkpoint
UPDATE runs
SET status = %(status)s, data = %(data)s, cursor = %(cursor)s, error = %(error)s,
    waiting_for = %(waiting_for)s::jsonb, wake_at = %(wake_at)s, updated_at = %(now)s,
    owner = CASE WHEN %(release)s THEN NULL ELSE owner END,
    lease_until = CASE WHEN %(release)s THEN NULL ELSE lease_until END,
    control = CASE WHEN %(clear_control)s THEN NULL ELSE control END,
    result = COALESCE(%(result)s::text, result)
WHERE id = %(id)s AND token = %(token)s
  AND status NOT IN ('completed', 'failed', 'cancelled')  -- an ended run is never written again
RETURNING control;

-- name: insert_event
INSERT INTO events (run_id, at, kind, step, detail)
VALUES (%(run_id)s, %(at)s, %(kind)s, %(step)s, %(detail)s::jsonb);

-- name: history
SELECT run_id, at, kind, step, detail FROM events WHERE run_id = %(run_id)s ORDER BY id;

-- name: insert_inbox
INSERT INTO inbox (run_id, kind, name, payload, created_at)
VALUES (%(run_id)s, %(kind)s, %(name)s, %(payload)s, %(now)s);

-- name: insert_keyed_inbox
-- A message with the sender's idempotency key: no row (and nothing returned) if one has it.
INSERT INTO inbox (run_id, kind, name, payload, created_at, idempotency_key)
VALUES (%(run_id)s, %(kind)s, %(name)s, %(payload)s, %(now)s, %(key)s)
ON CONFLICT (run_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING seq;

-- name: keyed_inbox
-- Whether the run's inbox has a message with this idempotency key (consumed or not).
SELECT seq FROM inbox WHERE run_id = %(run_id)s AND idempotency_key = %(key)s;

-- name: pending_decisions
SELECT payload FROM inbox
WHERE run_id = %(run_id)s AND NOT consumed AND kind = 'approval' AND name = %(name)s;

-- name: read_inbox
SELECT seq, run_id, kind, name, payload, created_at FROM inbox
WHERE run_id = %(run_id)s AND NOT consumed AND kind = %(kind)s AND name = %(name)s
ORDER BY seq;

-- name: pending_inbox
SELECT seq, kind, name FROM inbox WHERE run_id = %(run_id)s AND NOT consumed ORDER BY seq;

-- name: consume_inbox
UPDATE inbox SET consumed = true WHERE seq = ANY(%(seqs)s::bigint[]);

-- name: finished_among
SELECT id FROM runs
WHERE id = ANY(%(ids)s::text[]) AND status IN ('completed', 'failed', 'cancelled');

-- name: next_wake
SELECT MIN(wake_at) AS wake_at FROM runs
WHERE status = 'waiting' AND wake_at IS NOT NULL
  AND (definition_id = ANY(%(definitions)s::text[]) OR workflow = ANY(%(upgrades)s::text[]));

-- name: insert_schedule
INSERT INTO schedules (id, workflow, expression, timezone, input, enabled, options, next_run,
                       last_run, last_run_id, created_at, updated_at)
VALUES (%(id)s, %(workflow)s, %(expression)s, %(timezone)s, %(input)s, %(enabled)s, %(options)s,
        %(next_run)s, NULL, NULL, %(now)s, %(now)s)
ON CONFLICT (id) DO NOTHING;

-- name: get_schedule
SELECT * FROM schedules WHERE id = %(id)s;

-- name: list_schedules
SELECT * FROM schedules ORDER BY id;

-- name: delete_schedule
DELETE FROM schedules WHERE id = %(id)s;

-- name: set_schedule_enabled
UPDATE schedules SET enabled = %(enabled)s, next_run = %(next_run)s, updated_at = %(now)s,
    options = COALESCE(%(options)s, options)
WHERE id = %(id)s;

-- name: advance_schedule
UPDATE schedules
SET next_run = %(new_next)s, last_run = COALESCE(%(last_run)s, last_run),
    last_run_id = COALESCE(%(last_run_id)s, last_run_id), updated_at = %(now)s
WHERE id = %(id)s AND next_run = %(expected_next)s AND enabled;

-- name: make_runnable
UPDATE runs
SET status = CASE WHEN %(owner)s::text IS NULL THEN 'pending' ELSE 'running' END,
    wake_at = NULL, waiting_for = '[]', updated_at = %(now)s,
    owner = %(owner)s, lease_until = %(lease_until)s, token = token + 1
WHERE id = %(id)s
RETURNING *;

-- name: set_control
UPDATE runs SET control = %(control)s WHERE id = %(id)s;

-- name: park
UPDATE runs
SET status = 'paused', control = NULL, owner = NULL, lease_until = NULL, updated_at = %(now)s
WHERE id = %(id)s;

-- name: pre_commit
-- The last statement of every transaction: wakes idle engines (LISTEN treadle) once it commits,
-- and gives the transaction id to look up should the connection die during COMMIT.
SELECT pg_current_xact_id_if_assigned()::text AS xid,
       (SELECT count(pg_notify('treadle', run_id))
        FROM unnest(%(run_ids)s::text[]) AS run_id) AS notified;

-- name: xact_status
SELECT pg_xact_status(%(xid)s::xid8) AS status;

-- name: count_unfinished
SELECT status, COUNT(*) AS n FROM runs
WHERE status IN ('pending', 'running', 'waiting', 'paused', 'held')
GROUP BY status;

-- name: save_progress
-- The common checkpoint: a running run stays running (no indexed column changes).
UPDATE runs SET data = %(data)s, cursor = %(cursor)s, updated_at = %(now)s
WHERE id = %(id)s AND token = %(token)s
  AND status NOT IN ('completed', 'failed', 'cancelled')  -- an ended run is never written again
RETURNING control;

-- name: migrate_run
UPDATE runs
SET definition_id = %(definition_id)s, version = %(version)s, cursor = %(cursor)s,
    waiting_for = %(waiting_for)s::jsonb, updated_at = %(now)s
WHERE id = %(id)s AND token = %(token)s
RETURNING *;

-- name: set_definition
UPDATE runs SET definition_id = %(definition_id)s, version = %(version)s
WHERE id = %(id)s AND token = %(token)s;

-- name: waiting_by_kind
-- WAITING runs per kind of wait key ("signal:go" is a signal); a run waiting for two kinds counts
-- in both.
SELECT split_part(k.value, ':', 1) AS kind, COUNT(DISTINCT r.id) AS n
FROM runs r CROSS JOIN LATERAL jsonb_array_elements_text(r.waiting_for) AS k(value)
WHERE r.status = 'waiting'
GROUP BY 1;

-- name: oldest_runnable
-- Since when the oldest runnable run waits for an engine: a PENDING run since it became pending,
-- a WAITING one since its timer came due.
SELECT (SELECT MIN(updated_at) FROM runs
        WHERE status = 'pending' AND (owner IS NULL OR lease_until < %(now)s)) AS pending_since,
       (SELECT MIN(wake_at) FROM runs
        WHERE status = 'waiting' AND wake_at <= %(now)s) AS due_since;

-- name: set_run_trace
UPDATE runs SET trace = %(trace)s WHERE id = %(id)s;

-- name: run_values
SELECT key, part, content FROM run_values WHERE run_id = %(run_id)s ORDER BY key, part;

-- name: put_run_value
INSERT INTO run_values (run_id, key, part, content)
VALUES (%(run_id)s, %(key)s, %(part)s, %(content)s)
ON CONFLICT (run_id, key, part) DO UPDATE SET content = excluded.content;

-- name: delete_run_values
-- The rows of one key from a part on, or (key NULL) every row of the run.
DELETE FROM run_values
WHERE run_id = %(run_id)s AND (%(key)s::text IS NULL OR (key = %(key)s AND part >= %(part)s));
