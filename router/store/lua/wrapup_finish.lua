-- An operator ends an agent's after-call work now (API): the same transition as the
-- timer's (timers.lua), at ``now`` instead of the scheduled end. The agent becomes
-- available and is reindexed; the routing workers' timer sweep then offers it calls.
-- ARGV: P, agent_id, now
-- Returns {'ok', wrap-up seconds, queue} or {'unknown_agent', ''} / {'not_in_wrap_up', state}
local id, now = ARGV[2], tonumber(ARGV[3])
local ak = agent_key(id)
local a = redis.call('HMGET', ak, 'state', 'wrapup_start', 'wrapup_queue')
if not a[1] then return {'unknown_agent', ''} end
if a[1] ~= 'wrap_up' then return {'not_in_wrap_up', a[1]} end
redis.call('ZREM', P .. 'wrapup', id)
local seconds = math.max(0, now - num(a[2], now))
redis.call('HINCRBYFLOAT', ak, 'handled_s', seconds)
if a[3] and a[3] ~= '' then
  redis.call('HINCRBYFLOAT', stats_key(a[3]), 'wrapup_sum', seconds)
  redis.call('HINCRBY', stats_key(a[3]), 'wrapups', 1)
end
redis.call('HSET', ak, 'state', 'available', 'idle_since', now, 'state_since', now,
  'wrapup_until', now)
reindex(id, now)
nudge({agent = id, wrapup_s = seconds, queue = a[3] or ''})
return {'ok', secs(seconds), a[3] or ''}
