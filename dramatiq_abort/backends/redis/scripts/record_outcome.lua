-- The outcome, and its reason under a key of its own, empty for none, so
-- that an earlier one does not linger (SET rather than DEL: no other grant
-- in the ACL): the outcome key keeps the bare outcome that its readers expect.
-- KEYS: the outcome's key, the reason's key. ARGV: the outcome, the TTL in
-- milliseconds, the outcomes channel, the published message, the reason.
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[2])
return redis.call('PUBLISH', ARGV[3], ARGV[4])
