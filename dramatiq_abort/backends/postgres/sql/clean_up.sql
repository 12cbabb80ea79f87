-- Expired rows are deleted apart from the writes, and skipped when another
-- transaction holds them: a clean-up never waits on a write, so the two
-- cannot deadlock.
DELETE FROM {table} WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM {table} WHERE expires_at <= now() FOR UPDATE SKIP LOCKED
))
