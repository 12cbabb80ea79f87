-- Record every event under its own key with its TTL, index it by expiry
-- (server time, so producers' clocks do not matter) and publish the batch,
-- all in one atomic step: a subscriber that catches up after subscribing
-- cannot miss an event.
-- KEYS: the index, then one key per event. ARGV: the TTL in milliseconds,
-- the channel, the published batch, then each event's stored record.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 2], 'PX', ttl)
  redis.call('ZADD', KEYS[1], now + ttl, KEYS[i])
end
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return #KEYS - 1
