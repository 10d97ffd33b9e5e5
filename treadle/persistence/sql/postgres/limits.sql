-- Concurrency limits (see _limit_scripts.py): a row a run that holds a slot of its key, or is
-- queued for one. Every transaction that counts or changes the slots of a key first takes the
-- key's advisory lock, so counting the holders is exact across engines.

-- name: lock_limit_key
-- Held until the transaction ends ('limit:' keeps it apart from the schema's lock).
SELECT pg_advisory_xact_lock(hashtext('limit:' || %(key)s));

-- name: slot_of_run
SELECT key, held FROM limit_holders WHERE run_id = %(run_id)s;

-- name: slot_holders
SELECT run_id FROM limit_holders WHERE key = %(key)s AND held ORDER BY since, run_id;

-- name: insert_slot
INSERT INTO limit_holders (run_id, key, cap, held, since)
VALUES (%(run_id)s, %(key)s, %(cap)s, %(held)s, %(now)s);

-- name: delete_slot
DELETE FROM limit_holders WHERE run_id = %(run_id)s RETURNING key, cap;

-- name: held_slots
SELECT COUNT(*) AS n FROM limit_holders WHERE key = %(key)s AND held;

-- name: queued_slots
-- The next queued runs of a key: higher priority first, then the oldest.
SELECT l.run_id, l.cap FROM limit_holders l JOIN runs r ON r.id = l.run_id
WHERE l.key = %(key)s AND NOT l.held
ORDER BY r.priority DESC, r.created_at, r.id
LIMIT %(limit)s;

-- name: grant_slot
UPDATE limit_holders SET held = true, since = %(now)s WHERE run_id = %(run_id)s;

-- name: list_limits
SELECT l.key, l.cap, l.held, l.run_id FROM limit_holders l JOIN runs r ON r.id = l.run_id
ORDER BY l.key, l.held DESC, r.priority DESC, r.created_at, r.id;
