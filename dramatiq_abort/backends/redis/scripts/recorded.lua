-- Every recorded event still valid: key, stored value and milliseconds left.
-- KEYS: the index.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local found = {}
for _, key in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  local value = redis.call('GET', key)
  local left = redis.call('PTTL', key)
  if value and left > 0 then
    table.insert(found, key)
    table.insert(found, value)
    table.insert(found, left)
  end
end
return found
