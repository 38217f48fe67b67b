-- Time-driven transitions, run by whichever worker holds the timer lease.
-- ARGV: P, now, limit, days
-- Wrap-up that has run its course makes the agent available; offers that were never
-- dispatched (or dispatched and never rang) by their deadline go back in line.
-- Returns {agent, wrap-up seconds, queue, ... (triples), '|', calls_requeued...}
local now, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
use_days(ARGV[4])
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'wrapup', '-inf', now, 'LIMIT', 0, limit)) do
  local seconds, queue = end_wrapup(id, num(redis.call('HGET', agent_key(id), 'wrapup_until'), now), now)
  if seconds ~= nil then
    out[#out + 1] = id
    out[#out + 1] = secs(seconds)
    out[#out + 1] = queue
  end
end
out[#out + 1] = '|'
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'offers', '-inf', now, 'LIMIT', 0, limit)) do
  local c = redis.call('HMGET', call_key(id), 'state', 'agent')
  if c[1] == 'offered' or c[1] == 'dispatching' then
    requeue(id)
    release_reservation(c[2], now)
    out[#out + 1] = id
  else
    redis.call('ZREM', P .. 'offers', id)
  end
end
return out
