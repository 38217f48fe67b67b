-- The agent's leg transferred the caller (BlindTransfer / AttendedTransfer, Result Success).
-- The agent keeps the call until its leg ends (agent_leg_ended.lua); when that was seen
-- first (Asterisk publishes BridgeLeave and AttendedTransfer from different threads), the
-- agent is released now, at the moment its leg ended.
-- ARGV: P, call_id, agent_id ('' = whoever has the call), kind, target, at, part, off, days
-- Returns {'marked', '0', queue, agent_id}, or {'transferred', talk, queue, agent_id,
-- agent_free[, candidate]} as call_hangup does, or {outcome, '0', queue, agent_id}.
local call_id, wanted, at = ARGV[2], ARGV[3], tonumber(ARGV[6])
use_days(ARGV[9])
local ck = call_key(call_id)
if redis.call('EXISTS', ck) == 0 then return {'unknown_call', '0', '', ''} end
local c = redis.call('HMGET', ck, 'state', 'agent', 'queue', 'leg_ended_at', 'xfer_at')
local queue, agent_id = c[3] or '', c[2] or ''
if seen(ck, ARGV[7], ARGV[8]) then return with_candidate({'duplicate', '0', queue, agent_id}, agent_id) end
mark(ck, ARGV[7], ARGV[8])
-- Only a connected call's own agent transfers it, once (an attended transfer's second
-- leg, or a transfer event for a call already handed on, changes nothing).
if c[1] ~= 'connected' or (wanted ~= '' and wanted ~= agent_id) or c[5] then
  return {'ignored', '0', queue, agent_id}
end
redis.call('HSET', ck, 'xfer_at', at, 'xfer_kind', ARGV[4], 'xfer_to', ARGV[5], 'xfer_agent', agent_id)
redis.call('HINCRBY', ck, 'transfers', 1)
stat(queue, 'transferred', 1, at)
if not c[4] then return {'marked', '0', queue, agent_id} end
local talk = end_transferred_call(call_id, num(c[4], at))
return with_candidate({'transferred', secs(talk), queue, agent_id}, agent_id)
