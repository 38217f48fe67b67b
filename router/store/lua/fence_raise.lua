-- The fencing mark of one Kafka partition of AMI events (router/fencing.py): the highest
-- ingest fencing token seen on it, and the first offset that carried it. Only ever raised
-- (a higher token), or moved to an earlier offset of the same token (a redelivery read
-- before what was seen first), so that no worker can move it back.
-- ARGV: P, part, token, offset. Returns the mark in force, "token:offset".
local key = P .. 'fence_marks'
local token, offset = tonumber(ARGV[3]), tonumber(ARGV[4])
local current = redis.call('HGET', key, ARGV[2])
if current then
  local t, o = string.match(current, '^(%d+):(%-?%d+)$')
  t, o = tonumber(t), tonumber(o)
  if t and (token < t or (token == t and offset >= o)) then return current end
end
local mark = ARGV[3] .. ':' .. ARGV[4]
redis.call('HSET', key, ARGV[2], mark)
return mark
