-- Rate limiters (treadle.RateLimit). SQLite's clock is the engines' (one host): :now.

-- name: reserve_rate
-- One call of a limiter: its theoretical arrival time moves on by one interval from itself or
-- from now, whichever is later; the call may go at max(now, tat - burst * interval).
INSERT INTO rate_limits (name, calls, per_s, burst, tat, updated_at)
VALUES (:name, :calls, :per_s, :burst, :now + :interval, :now)
ON CONFLICT (name) DO UPDATE SET
    calls = excluded.calls, per_s = excluded.per_s, burst = excluded.burst,
    tat = MAX(rate_limits.tat, excluded.updated_at) + :interval,
    updated_at = excluded.updated_at
RETURNING tat, updated_at AS now;

-- name: rate_clock
SELECT :now AS now;

-- name: list_rate_limits
SELECT name, calls, per_s, burst, tat, :now AS now FROM rate_limits ORDER BY name;

-- name: rate_waiting
-- WAITING runs by the limiter they wait for ('rate:<name>' in waiting_for).
SELECT substr(j.value, 6) AS name, COUNT(DISTINCT r.id) AS n
FROM runs r INDEXED BY runs_status, json_each(r.waiting_for) j
WHERE r.status = 'waiting' AND j.value LIKE 'rate:%'
GROUP BY 1;
