-- An agent's leg of a call left its bridge or hung up (BridgeLeave / Hangup of the leg).
-- After a transfer this is where the agent's part ends: talk stops, wrap-up starts. Any
-- other time the caller's Hangup ends the call as always; the moment is only kept in case
-- the transfer event comes after it (see call_transfer.lua).
-- ARGV: P, call_id, agent_id, at, part, off, days
-- Returns {'transferred', talk, queue, agent_id, agent_free[, candidate]} or
-- {outcome, '0', queue, agent_id}.
local call_id, agent_id, at = ARGV[2], ARGV[3], tonumber(ARGV[4])
use_days(ARGV[7])
local ck = call_key(call_id)
if redis.call('EXISTS', ck) == 0 then return {'unknown_call', '0', '', ''} end
local c = redis.call('HMGET', ck, 'state', 'agent', 'queue', 'xfer_at')
local queue = c[3] or ''
if seen(ck, ARGV[5], ARGV[6]) then return with_candidate({'duplicate', '0', queue, agent_id}, agent_id) end
mark(ck, ARGV[5], ARGV[6])
if c[1] ~= 'connected' or c[2] ~= agent_id then return {'ignored', '0', queue, agent_id} end
if not c[4] then
  redis.call('HSETNX', ck, 'leg_ended_at', at)
  return {'recorded', '0', queue, agent_id}
end
local talk = end_transferred_call(call_id, at)
return with_candidate({'transferred', secs(talk), queue, agent_id}, agent_id)
