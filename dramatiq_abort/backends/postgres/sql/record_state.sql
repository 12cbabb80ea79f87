-- A message's state, chosen by a layer on top of the middleware (compat).
INSERT INTO {states} (message_id, state, expires_at)
VALUES (%(message_id)s, %(state)s, now() + %(ttl)s::bigint * interval '1 millisecond')
ON CONFLICT (message_id) DO UPDATE SET state = excluded.state, expires_at = excluded.expires_at
