-- An operator extends an agent's after-call work (API). Router-only state: the roster in
-- Asterisk never knows about wrap-up, so this never goes through AMI.
-- ARGV: P, agent_id, seconds, now
-- The new end is max(current end, now) + seconds: an extension asked for just after the
-- wrap-up was due (the timer has not run yet) still gives the agent the full extra time.
-- Returns {'ok', wrapup_until} or {'unknown_agent', ''} / {'not_in_wrap_up', state}
local id, seconds, now = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local ak = agent_key(id)
local a = redis.call('HMGET', ak, 'state', 'wrapup_until')
if not a[1] then return {'unknown_agent', ''} end
if a[1] ~= 'wrap_up' then return {'not_in_wrap_up', a[1]} end
local ends = math.max(num(a[2], now), now) + seconds
redis.call('HSET', ak, 'wrapup_until', ends)
redis.call('HINCRBYFLOAT', ak, 'wrapup_extended_s', seconds)
redis.call('ZADD', P .. 'wrapup', ends, id)
return {'ok', secs(ends)}
