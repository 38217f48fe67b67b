-- The offered agent did not take the call (DialEnd NOANSWER, BUSY, ...).
-- ARGV: P, call_id, agent_id, at, auto_pause ('1'|'0'), pause_reason, part, off, days
-- Returns {'declined', paused ('1'|'0')} or {outcome, state}
local call_id, agent_id, at = ARGV[2], ARGV[3], tonumber(ARGV[4])
use_days(ARGV[9])
local ck = call_key(call_id)
if redis.call('EXISTS', ck) == 0 then return {'unknown_call', ''} end
if seen(ck, ARGV[7], ARGV[8]) then return {'duplicate', ''} end
mark(ck, ARGV[7], ARGV[8])
local c = redis.call('HMGET', ck, 'state', 'agent', 'queue')
local offered = c[1] == 'offered' or c[1] == 'dispatching' or c[1] == 'ringing'
if not offered or c[2] ~= agent_id then return {'ignored', c[1]} end
return {'declined', decline_offer(call_id, agent_id, c[3], at, ARGV[5], ARGV[6])}
