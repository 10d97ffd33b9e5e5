-- Rate limiters (treadle.RateLimit). Times are the server's (clock_timestamp()), so that engines
-- whose clocks disagree reserve on one clock.

-- name: reserve_rate
-- One call of a limiter: its theoretical arrival time moves on by one interval from itself or
-- from now, whichever is later; the call may go at max(now, tat - burst * interval).
WITH clock AS (SELECT clock_timestamp() AS now)
INSERT INTO rate_limits AS r (name, calls, per_s, burst, tat, updated_at)
SELECT %(name)s, %(calls)s, %(per_s)s, %(burst)s,
       now + make_interval(secs => %(interval)s::double precision), now
FROM clock
ON CONFLICT (name) DO UPDATE SET
    calls = excluded.calls, per_s = excluded.per_s, burst = excluded.burst,
    tat = GREATEST(r.tat, excluded.updated_at)
          + make_interval(secs => %(interval)s::double precision),
    updated_at = excluded.updated_at
RETURNING r.tat, r.updated_at AS now;

-- name: rate_clock
SELECT clock_timestamp() AS now;

-- name: list_rate_limits
SELECT name, calls, per_s, burst, tat, clock_timestamp() AS now FROM rate_limits ORDER BY name;

-- name: rate_waiting
-- WAITING runs by the limiter they wait for ('rate:<name>' in waiting_for).
SELECT substr(k.value, 6) AS name, COUNT(DISTINCT r.id) AS n
FROM runs r CROSS JOIN LATERAL jsonb_array_elements_text(r.waiting_for) AS k(value)
WHERE r.status = 'waiting' AND k.value LIKE 'rate:%%'
GROUP BY 1;
