-- Migrations for PostgreSQL: a block 'migrate_<n>' takes a database from schema version n-1 to
-- n and is applied by 'treadle db upgrade --db postgresql://...' (PostgresPersistence.upgrade),
-- in the same transaction as the new version number, under the schema lock. Version 1 is the
-- schema block itself; there is no migration yet. Add one per dialect with every new schema
-- version, change the schema blocks to match, and keep a snapshot of the old version's schema
-- in tests/data/ (test_store_contract.py checks that migrating it gives exactly what the
-- schema block creates). Example for the next version:
--
--   -- name: migrate_2
--   ALTER TABLE runs ADD COLUMN priority integer NOT NULL DEFAULT 0;

-- name: migrate_2
-- Several definitions per name (labels), runs pinned to theirs, forks.
ALTER TABLE workflows ADD COLUMN version text;
ALTER TABLE runs ADD COLUMN version text;
ALTER TABLE runs ADD COLUMN forked_from text;

-- name: migrate_3
-- Idempotent deliveries: at most one inbox message per (run, sender's key).
ALTER TABLE inbox ADD COLUMN idempotency_key text;
CREATE UNIQUE INDEX IF NOT EXISTS inbox_idempotency ON inbox (run_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- name: migrate_4
-- Labels and search, retention by age, the caller's trace context.
ALTER TABLE runs ADD COLUMN labels text NOT NULL DEFAULT '{}';
ALTER TABLE runs ADD COLUMN trace text;
CREATE INDEX IF NOT EXISTS runs_finished ON runs (status, updated_at)
    WHERE status IN ('completed', 'failed', 'cancelled');
CREATE TABLE IF NOT EXISTS run_labels (
    run_id text NOT NULL,
    key    text NOT NULL,
    value  text NOT NULL,
    PRIMARY KEY (key, value, run_id)
);
CREATE INDEX IF NOT EXISTS run_labels_run ON run_labels (run_id);
CREATE INDEX IF NOT EXISTS inbox_run ON inbox (run_id);

-- name: migrate_5
-- Deadlines of runs, and what a run returns.
ALTER TABLE runs ADD COLUMN deadline_at timestamptz;
ALTER TABLE runs ADD COLUMN result text;
CREATE INDEX IF NOT EXISTS runs_deadline ON runs (deadline_at) WHERE deadline_at IS NOT NULL;

-- name: migrate_6
-- Flow control: priority, concurrency limits, rate limits, debounce.
ALTER TABLE runs ADD COLUMN priority integer NOT NULL DEFAULT 0;
-- Rate limiters (treadle.RateLimit): the settings of the last reservation, and the theoretical
-- arrival time (GCRA) of the next call at the steady rate.
CREATE TABLE IF NOT EXISTS rate_limits (
    name       text PRIMARY KEY,
    calls      integer NOT NULL,
    per_s      double precision NOT NULL,
    burst      integer NOT NULL,
    tat        timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
ALTER TABLE runs ADD COLUMN debounce_key text;
-- Debounced runs not begun yet: one per (workflow, key); the claim that begins one clears it.
CREATE UNIQUE INDEX IF NOT EXISTS runs_debounce ON runs (workflow, debounce_key)
    WHERE debounce_key IS NOT NULL;
DROP INDEX IF EXISTS runs_claimable;  -- replaced by runs_claim_order
-- Runnable runs in the order they are claimed: higher priority first, FIFO within one.
CREATE INDEX IF NOT EXISTS runs_claim_order ON runs (priority DESC, created_at)
    WHERE status IN ('pending', 'running');
CREATE TABLE IF NOT EXISTS limit_holders (
    run_id text PRIMARY KEY,               -- a run of a limited workflow, from admission to its end
    key    text NOT NULL,                  -- its concurrency key: the workflow, or workflow[key]
    cap    integer NOT NULL,               -- the limit it was admitted or queued under
    held   boolean NOT NULL,               -- true: it holds a slot; false: it is queued for one
    since  timestamptz NOT NULL            -- when it took its slot or joined the queue
);
CREATE INDEX IF NOT EXISTS limit_holders_key ON limit_holders (key, held);
-- Large values of a run's data, stored beside it and written only when changed (part 0: a
-- whole value; 1, 2, ...: the chunks of a long list); deleted with the run.
CREATE TABLE IF NOT EXISTS run_values (
    run_id  text NOT NULL,
    key     text NOT NULL,
    part    integer NOT NULL,
    content text NOT NULL,
    PRIMARY KEY (run_id, key, part)
);
