-- Debounced starts (see _debounce_scripts.py). A debounced run that has not begun carries its
-- key; runs_debounce keeps one such run per (workflow, key).

-- name: debounced_run
-- Locked, so that the claim that would begin it waits (or skips it) until this start is in.
SELECT * FROM runs WHERE workflow = %(workflow)s AND debounce_key = %(key)s FOR UPDATE;

-- name: insert_debounced_run
-- No row when the key is taken (a concurrent start made the run first): the caller looks again.
INSERT INTO runs (id, workflow, definition_id, status, data, cursor, error, waiting_for,
                  wake_at, parent_id, created_at, updated_at, owner, lease_until, token, control,
                  version, forked_from, deadline_at, labels, priority, debounce_key)
VALUES (%(id)s, %(workflow)s, %(definition_id)s, 'waiting', %(data)s, %(cursor)s, NULL,
        %(waiting_for)s::jsonb, %(wake_at)s, NULL, %(now)s, %(now)s, NULL, NULL, 1, NULL,
        %(version)s, NULL, %(deadline_at)s, %(labels)s, %(priority)s, %(key)s)
ON CONFLICT DO NOTHING;

-- name: debounce_run
-- Another start collapses into the run: its data, priority, deadline and wake-up.
UPDATE runs
SET data = %(data)s, priority = %(priority)s, deadline_at = %(deadline_at)s,
    wake_at = %(wake_at)s, waiting_for = %(waiting_for)s::jsonb, updated_at = %(now)s
WHERE id = %(id)s
RETURNING *;

-- name: clear_debounce
UPDATE runs SET debounce_key = NULL WHERE id = %(id)s;
