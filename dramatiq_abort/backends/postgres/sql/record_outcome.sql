-- A message's outcome, recorded and named on the outcomes channel in one
-- transaction.
WITH written AS (
    INSERT INTO {outcomes} (message_id, outcome, reason, expires_at)
    VALUES (
        %(message_id)s, %(outcome)s, %(reason)s,
        now() + %(ttl)s::bigint * interval '1 millisecond'
    )
    ON CONFLICT (message_id) DO UPDATE
    SET outcome = excluded.outcome, reason = excluded.reason, expires_at = excluded.expires_at
)
SELECT pg_notify(%(channel)s, %(message_id)s)
