-- An operator ends an agent's after-call work now (API): the same transition as the
-- timer's (timers.lua), at ``now`` instead of the scheduled end. The agent becomes
-- available and is reindexed; the routing workers' timer sweep then offers it calls.
-- ARGV: P, agent_id, now, days
-- Returns {'ok', wrap-up seconds, queue} or {'unknown_agent', ''} / {'not_in_wrap_up', state}
local id, now = ARGV[2], tonumber(ARGV[3])
use_days(ARGV[4])
local state = redis.call('HGET', agent_key(id), 'state')
if not state then return {'unknown_agent', ''} end
if state ~= 'wrap_up' then return {'not_in_wrap_up', state} end
local seconds, queue = end_wrapup(id, now, now)
nudge({agent = id, wrapup_s = seconds, queue = queue})
return {'ok', secs(seconds), queue}
