-- The agent's phone changed state (DeviceStateChange); see set_device_state.
-- ARGV: P, agent_id, device_state, at, part, off
local id, at = ARGV[2], tonumber(ARGV[4])
local ak = agent_key(id)
if redis.call('EXISTS', ak) == 0 then return {'unknown_agent', ''} end
if seen(ak, ARGV[5], ARGV[6]) then return {'duplicate', ''} end
mark(ak, ARGV[5], ARGV[6])
local busy, was_busy = set_device_state(id, ARGV[3])
reindex(id, at)
return {busy == was_busy and 'unchanged' or 'changed', busy}
