-- Record the batch and notify it in one statement, so one transaction: a
-- subscriber that catches up after it listens cannot miss an event. The
-- rows are written in key order, so that two batches that share messages
-- lock them in the same order and never deadlock. Every row of this
-- package expires by the server's clock, its TTL in milliseconds after now.
WITH written AS (
    INSERT INTO {events} (key, params, ttl, expires_at)
    SELECT key, params, %(ttl)s::bigint, now() + %(ttl)s::bigint * interval '1 millisecond'
    FROM unnest(%(keys)s::text[], %(params)s::text[]) AS batch(key, params)
    ORDER BY key
    ON CONFLICT (key) DO UPDATE
    SET params = excluded.params, ttl = excluded.ttl, expires_at = excluded.expires_at
)
SELECT pg_notify(%(channel)s, fragment) FROM unnest(%(fragments)s::text[]) AS f(fragment)
