-- Concurrency limits (see _limit_scripts.py): a row a run that holds a slot of its key, or is
-- queued for one. SQLite serialises every writer, so counting the holders is exact as it is.

-- name: lock_limit_key
-- The transaction's BEGIN IMMEDIATE holds the database's write lock: nothing more to take.
SELECT 1;

-- name: slot_of_run
SELECT key, held FROM limit_holders WHERE run_id = :run_id;

-- name: slot_holders
SELECT run_id FROM limit_holders WHERE key = :key AND held = 1 ORDER BY since, run_id;

-- name: insert_slot
INSERT INTO limit_holders (run_id, key, cap, held, since)
VALUES (:run_id, :key, :cap, :held, :now);

-- name: delete_slot
DELETE FROM limit_holders WHERE run_id = :run_id RETURNING key, cap;

-- name: held_slots
SELECT COUNT(*) AS n FROM limit_holders WHERE key = :key AND held = 1;

-- name: queued_slots
-- The next queued runs of a key: higher priority first, then the oldest.
SELECT l.run_id, l.cap FROM limit_holders l JOIN runs r ON r.id = l.run_id
WHERE l.key = :key AND l.held = 0
ORDER BY r.priority DESC, r.created_at, r.id
LIMIT :limit;

-- name: grant_slot
UPDATE limit_holders SET held = 1, since = :now WHERE run_id = :run_id;

-- name: list_limits
SELECT l.key, l.cap, l.held, l.run_id FROM limit_holders l JOIN runs r ON r.id = l.run_id
ORDER BY l.key, l.held DESC, r.priority DESC, r.created_at, r.id;
