-- Time-driven transitions, run by whichever worker holds the timer lease.
-- ARGV: P, now, limit
-- Wrap-up that has run its course makes the agent available; offers that were never
-- dispatched (or dispatched and never rang) by their deadline go back in line.
-- Returns {agent, wrap-up seconds, queue, ... (triples), '|', calls_requeued...}
local now, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'wrapup', '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('ZREM', P .. 'wrapup', id)
  local ak = agent_key(id)
  local a = redis.call('HMGET', ak, 'state', 'wrapup_start', 'wrapup_until', 'wrapup_queue')
  if a[1] == 'wrap_up' then
    local ended = num(a[3], now)
    local seconds = math.max(0, ended - num(a[2], ended))
    redis.call('HINCRBYFLOAT', ak, 'handled_s', seconds)
    if a[4] and a[4] ~= '' then
      redis.call('HINCRBYFLOAT', stats_key(a[4]), 'wrapup_sum', seconds)
      redis.call('HINCRBY', stats_key(a[4]), 'wrapups', 1)
    end
    redis.call('HSET', ak, 'state', 'available', 'idle_since', ended, 'state_since', ended)
    reindex(id, now)
    out[#out + 1] = id
    out[#out + 1] = secs(seconds)
    out[#out + 1] = a[4] or ''
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
