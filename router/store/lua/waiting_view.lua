-- Waiting calls as the routing policy needs them, in line order, in one round trip.
-- ARGV: P, 'range', start, count   or   P, 'ids', id1, id2, ...
-- Returns WAITING_WIDTH fields per call still waiting (push_waiting_call in _lib.lua)
local ids
if ARGV[2] == 'range' then
  local start = tonumber(ARGV[3])
  ids = redis.call('ZRANGE', P .. 'waiting', start, start + tonumber(ARGV[4]) - 1)
else
  ids = {}
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local out = {}
for _, id in ipairs(ids) do push_waiting_call(out, id) end
return out
