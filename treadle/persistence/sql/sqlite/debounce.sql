-- Debounced starts (see _debounce_scripts.py). A debounced run that has not begun carries its
-- key; runs_debounce keeps one such run per (workflow, key).

-- name: debounced_run
SELECT * FROM runs WHERE workflow = :workflow AND debounce_key = :key;

-- name: insert_debounced_run
-- No row when the key is taken (a concurrent start made the run first): the caller looks again.
INSERT INTO runs (id, workflow, definition_id, status, data, cursor, error, waiting_for,
                  wake_at, parent_id, created_at, updated_at, owner, lease_until, token, control,
                  version, forked_from, deadline_at, labels, priority, debounce_key)
VALUES (:id, :workflow, :definition_id, 'waiting', :data, :cursor, NULL, :waiting_for,
        :wake_at, NULL, :now, :now, NULL, NULL, 1, NULL, :version, NULL,
        :deadline_at, :labels, :priority, :key)
ON CONFLICT DO NOTHING;

-- name: debounce_run
-- Another start collapses into the run: its data, priority, deadline and wake-up.
UPDATE runs
SET data = :data, priority = :priority, deadline_at = :deadline_at, wake_at = :wake_at,
    waiting_for = :waiting_for, updated_at = :now
WHERE id = :id
RETURNING *;

-- name: clear_debounce
UPDATE runs SET debounce_key = NULL WHERE id = :id;
