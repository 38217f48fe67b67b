-- The agent's phone changed state (DeviceStateChange). An unavailable phone, or one busy
-- with a call the ACD did not give it, takes the agent out of the availability indexes;
-- busy states while the agent holds ACD calls are the ACD's own doing and change nothing.
-- ARGV: P, agent_id, device_state, at, part, off
local id, at = ARGV[2], tonumber(ARGV[4])
local ak = agent_key(id)
if redis.call('EXISTS', ak) == 0 then return {'unknown_agent', ''} end
if seen(ak, ARGV[5], ARGV[6]) then return {'duplicate', ''} end
mark(ak, ARGV[5], ARGV[6])
local state = string.upper(ARGV[3])
local a = redis.call('HMGET', ak, 'reserved', 'connected', 'dev_busy')
local active = num(a[1], 0) + num(a[2], 0)
local busy = '0'
if state == 'UNAVAILABLE' or state == 'INVALID' then
  busy = '1'
elseif active == 0 and (state == 'INUSE' or state == 'BUSY' or state == 'RINGING'
    or state == 'RINGINUSE' or state == 'ONHOLD') then
  busy = '1'
end
redis.call('HSET', ak, 'dev_state', state, 'dev_busy', busy)
reindex(id, at)
return {busy == a[3] and 'unchanged' or 'changed', busy}
