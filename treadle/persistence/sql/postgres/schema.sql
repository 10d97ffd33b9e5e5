-- The treadle schema for PostgreSQL, version 6 (the whole schema at the newest version: it is
-- what an empty database gets). Times are timestamptz; ids of events and inbox rows bigserial.
-- migrations.sql takes older databases here.
-- Data, cursors and payloads stay JSON text, exactly as the core wrote them (jsonb would reorder
-- the keys of a run's data).

-- name: schema
-- Several engines may start at once on an empty database: the first creates, the others wait.
SELECT pg_advisory_xact_lock(hashtext('treadle-schema'));
CREATE TABLE IF NOT EXISTS treadle_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS workflows (
    id         text PRIMARY KEY,           -- fingerprint of the definition's shape
    name       text NOT NULL,
    shape      text NOT NULL,              -- JSON, see Workflow.describe()
    created_at timestamptz NOT NULL,
    version    text                        -- the definition's label, if any
);
CREATE TABLE IF NOT EXISTS runs (
    id            text PRIMARY KEY,
    workflow      text NOT NULL,
    definition_id text NOT NULL,
    status        text NOT NULL,
    data          text NOT NULL,           -- JSON object: the run's data at its last checkpoint
    cursor        text NOT NULL,           -- JSON: where the run is in its step tree
    error         text,
    waiting_for   jsonb NOT NULL DEFAULT '[]',
    wake_at       timestamptz,
    parent_id     text,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    owner         text,                    -- the engine executing it, while it holds a lease
    lease_until   timestamptz,
    token         bigint NOT NULL DEFAULT 0,  -- fencing token, bumped on every claim
    control       text,                    -- 'pause' or 'cancel' requested of the owner
    version       text,                    -- the label of the definition it follows
    forked_from   text,                    -- the run it was forked from
    labels        text NOT NULL DEFAULT '{}',  -- JSON object of the run's labels (run_labels)
    trace         text,                    -- JSON: the trace context of the caller of start
    deadline_at   timestamptz,                    -- when the run is cancelled unless it has ended
    result        text,                    -- JSON: what the run returned (its output), once ended
    priority      integer NOT NULL DEFAULT 0,  -- higher is claimed first; FIFO within one
    debounce_key  text                     -- set while a debounced run has not begun
);
CREATE INDEX IF NOT EXISTS runs_timers ON runs (wake_at)
    WHERE status = 'waiting' AND wake_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at);
CREATE INDEX IF NOT EXISTS runs_workflow ON runs (workflow, created_at);
CREATE INDEX IF NOT EXISTS runs_parent ON runs (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_owner ON runs (owner) WHERE owner IS NOT NULL;
-- Finished runs by age, for retention. Partial: a checkpoint of an unfinished run (which moves
-- updated_at) changes no entry of it.
CREATE INDEX IF NOT EXISTS runs_finished ON runs (status, updated_at)
    WHERE status IN ('completed', 'failed', 'cancelled');
-- The runs' labels, one row a label, for search by label (runs.labels is the same, for display).
CREATE TABLE IF NOT EXISTS run_labels (
    run_id text NOT NULL,
    key    text NOT NULL,
    value  text NOT NULL,
    PRIMARY KEY (key, value, run_id)
);
CREATE INDEX IF NOT EXISTS run_labels_run ON run_labels (run_id);
-- Unfinished runs with a deadline, by deadline (the engines' deadline timers).
CREATE INDEX IF NOT EXISTS runs_deadline ON runs (deadline_at) WHERE deadline_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS events (
    id     bigserial PRIMARY KEY,
    run_id text NOT NULL,
    at     timestamptz NOT NULL,
    kind   text NOT NULL,
    step   text,
    detail jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events (run_id, id);
CREATE TABLE IF NOT EXISTS inbox (
    seq        bigserial PRIMARY KEY,
    run_id     text NOT NULL,
    kind       text NOT NULL,              -- 'signal', 'approval' or 'run' (a child finished)
    name       text NOT NULL,
    payload    text NOT NULL,
    created_at timestamptz NOT NULL,
    consumed   boolean NOT NULL DEFAULT false,
    idempotency_key text                   -- the sender's key: one delivery per key and run
);
-- Every message of a run, consumed or not: deleted with the run (retention).
CREATE INDEX IF NOT EXISTS inbox_run ON inbox (run_id);
CREATE INDEX IF NOT EXISTS inbox_pending ON inbox (run_id, seq) WHERE NOT consumed;
CREATE UNIQUE INDEX IF NOT EXISTS inbox_idempotency ON inbox (run_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS schedules (
    id          text PRIMARY KEY,
    workflow    text NOT NULL,
    expression  text NOT NULL,
    timezone    text NOT NULL,
    input       text NOT NULL,
    enabled     boolean NOT NULL,
    options     text NOT NULL DEFAULT '{}',
    next_run    timestamptz,
    last_run    timestamptz,
    last_run_id text,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
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
-- Debounced runs not begun yet: one per (workflow, key); the claim that begins one clears it.
CREATE UNIQUE INDEX IF NOT EXISTS runs_debounce ON runs (workflow, debounce_key)
    WHERE debounce_key IS NOT NULL;
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

-- name: schema_lock
-- Taken by 'treadle db upgrade' (and the start-up check) so that migrations never interleave.
SELECT pg_advisory_xact_lock(hashtext('treadle-schema'));
