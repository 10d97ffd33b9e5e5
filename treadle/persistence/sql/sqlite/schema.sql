-- The treadle schema for SQLite, version 6 (the whole schema at the newest version: it is what
-- an empty database gets; migrations.sql takes older ones there). Times are Unix epoch seconds
-- (REAL).

-- name: schema
CREATE TABLE IF NOT EXISTS treadle_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS workflows (
    id         TEXT PRIMARY KEY,           -- fingerprint of the definition's shape
    name       TEXT NOT NULL,
    shape      TEXT NOT NULL,              -- JSON, see Workflow.describe()
    created_at REAL NOT NULL,
    version    TEXT                        -- the definition's label, if any
);
CREATE TABLE IF NOT EXISTS runs (
    id            TEXT PRIMARY KEY,
    workflow      TEXT NOT NULL,
    definition_id TEXT NOT NULL,
    status        TEXT NOT NULL,
    data          TEXT NOT NULL,           -- JSON object: the run's data at its last checkpoint
    cursor        TEXT NOT NULL,           -- JSON: where the run is in its step tree
    error         TEXT,
    waiting_for   TEXT NOT NULL DEFAULT '[]',
    wake_at       REAL,
    parent_id     TEXT,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    owner         TEXT,                    -- the engine executing it, while it holds a lease
    lease_until   REAL,
    token         INTEGER NOT NULL DEFAULT 0,  -- fencing token, bumped on every claim
    control       TEXT,                    -- 'pause' or 'cancel' requested of the owner
    version       TEXT,                    -- the label of the definition it follows
    forked_from   TEXT,                    -- the run it was forked from
    labels        TEXT NOT NULL DEFAULT '{}',  -- JSON object of the run's labels (run_labels)
    trace         TEXT,                    -- JSON: the trace context of the caller of start
    deadline_at   REAL,                    -- when the run is cancelled unless it has ended
    result        TEXT,                    -- JSON: what the run returned (its output), once ended
    priority      INTEGER NOT NULL DEFAULT 0,  -- higher is claimed first; FIFO within one
    debounce_key  TEXT                     -- set while a debounced run has not begun
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status, wake_at);
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
    run_id TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (key, value, run_id)
);
CREATE INDEX IF NOT EXISTS run_labels_run ON run_labels (run_id);
-- Unfinished runs with a deadline, by deadline (the engines' deadline timers).
CREATE INDEX IF NOT EXISTS runs_deadline ON runs (deadline_at) WHERE deadline_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS events (
    id     INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    at     REAL NOT NULL,
    kind   TEXT NOT NULL,
    step   TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events (run_id, id);
CREATE TABLE IF NOT EXISTS inbox (
    seq        INTEGER PRIMARY KEY,
    run_id     TEXT NOT NULL,
    kind       TEXT NOT NULL,              -- 'signal', 'approval' or 'run' (a child finished)
    name       TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at REAL NOT NULL,
    consumed   INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT                   -- the sender's key: one delivery per key and run
);
-- Every message of a run, consumed or not: deleted with the run (retention).
CREATE INDEX IF NOT EXISTS inbox_run ON inbox (run_id);
CREATE INDEX IF NOT EXISTS inbox_pending ON inbox (run_id, seq) WHERE consumed = 0;
CREATE UNIQUE INDEX IF NOT EXISTS inbox_idempotency ON inbox (run_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS schedules (
    id          TEXT PRIMARY KEY,
    workflow    TEXT NOT NULL,
    expression  TEXT NOT NULL,
    timezone    TEXT NOT NULL,
    input       TEXT NOT NULL,
    enabled     INTEGER NOT NULL,
    options     TEXT NOT NULL DEFAULT '{}',
    next_run    REAL,
    last_run    REAL,
    last_run_id TEXT,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
-- Rate limiters (treadle.RateLimit): the settings of the last reservation, and the theoretical
-- arrival time (GCRA) of the next call at the steady rate.
CREATE TABLE IF NOT EXISTS rate_limits (
    name       TEXT PRIMARY KEY,
    calls      INTEGER NOT NULL,
    per_s      REAL NOT NULL,
    burst      INTEGER NOT NULL,
    tat        REAL NOT NULL,
    updated_at REAL NOT NULL
);
-- Debounced runs not begun yet: one per (workflow, key); the claim that begins one clears it.
CREATE UNIQUE INDEX IF NOT EXISTS runs_debounce ON runs (workflow, debounce_key)
    WHERE debounce_key IS NOT NULL;
-- Runnable runs in the order they are claimed: higher priority first, FIFO within one.
CREATE INDEX IF NOT EXISTS runs_claim_order ON runs (priority DESC, created_at)
    WHERE status IN ('pending', 'running');
CREATE TABLE IF NOT EXISTS limit_holders (
    run_id TEXT PRIMARY KEY,               -- a run of a limited workflow, from admission to its end
    key    TEXT NOT NULL,                  -- its concurrency key: the workflow, or workflow[key]
    cap    INTEGER NOT NULL,               -- the limit it was admitted or queued under
    held   INTEGER NOT NULL,               -- 1: it holds a slot; 0: it is queued for one
    since  REAL NOT NULL                   -- when it took its slot or joined the queue
);
CREATE INDEX IF NOT EXISTS limit_holders_key ON limit_holders (key, held);
-- Large values of a run's data, stored beside it and written only when changed (part 0: a
-- whole value; 1, 2, ...: the chunks of a long list); deleted with the run.
CREATE TABLE IF NOT EXISTS run_values (
    run_id  TEXT NOT NULL,
    key     TEXT NOT NULL,
    part    INTEGER NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (run_id, key, part)
);

-- name: schema_lock
-- Taken by 'treadle db upgrade' before it reads the version. In SQLite the transaction's
-- BEGIN IMMEDIATE already holds the database's write lock: there is nothing more to take.
SELECT 1;
