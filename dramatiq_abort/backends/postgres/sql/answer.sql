-- One worker's answer to an inquiry, named on the answers channel by its
-- reply address.
WITH written AS (
    INSERT INTO {answers} (reply_to, payload, expires_at)
    VALUES (%(reply_to)s, %(payload)s, now() + %(ttl)s::bigint * interval '1 millisecond')
)
SELECT pg_notify(%(channel)s, %(reply_to)s)
