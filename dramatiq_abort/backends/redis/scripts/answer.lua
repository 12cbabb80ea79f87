-- One worker's answer to an inquiry, on a list that the asker empties and
-- deletes, and that expires by itself if the asker is gone.
-- KEYS: the list. ARGV: the answer, the TTL in milliseconds.
redis.call('RPUSH', KEYS[1], ARGV[1])
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
