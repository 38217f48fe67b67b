-- The offered agent answered (DialEnd ANSWER): the call is connected.
-- ARGV: P, call_id, agent_id, at, part, off
-- Returns {'answered', wait_seconds, queue, agent_free} or {outcome, state}
local call_id, agent_id, at = ARGV[2], ARGV[3], tonumber(ARGV[4])
local ck = call_key(call_id)
if redis.call('EXISTS', ck) == 0 then return {'unknown_call', ''} end
if seen(ck, ARGV[5], ARGV[6]) then return {'duplicate', ''} end
mark(ck, ARGV[5], ARGV[6])
local c = redis.call('HMGET', ck, 'state', 'agent', 'queue', 'entered_at', 'sl_t', 'decision', 'reqs_now')
local offered = c[1] == 'offered' or c[1] == 'dispatching' or c[1] == 'ringing'
if not offered or c[2] ~= agent_id then return {'ignored', c[1]} end
-- The call's record keeps why this agent was chosen and the requirements it was chosen for.
local ok, decision = pcall(cjson.decode, c[6] or '')
if not ok or type(decision) ~= 'table' then decision = {} end
local reqs = type(decision.requirements) == 'string' and decision.requirements or (c[7] or '')
local reason = type(decision.reason) == 'string' and decision.reason or ''
redis.call('HSET', ck, 'state', 'connected', 'answered_at', at, 'reqs_now', reqs, 'ans_reason', reason)
redis.call('ZREM', P .. 'offers', call_id)
redis.call('ZREM', P .. 'relax_due', call_id)
local ak = agent_key(agent_id)
redis.call('HINCRBY', ak, 'reserved', -1)
redis.call('HINCRBY', ak, 'connected', 1)
reindex(agent_id, at)
local wait = math.max(0, at - num(c[4], at))
local sk = stats_key(c[3])
redis.call('HINCRBY', sk, 'answered', 1)
redis.call('HINCRBYFLOAT', sk, 'answer_wait_sum', wait)
if wait <= num(c[5], 0) then redis.call('HINCRBY', sk, 'answered_within', 1) end
return {'answered', secs(wait), c[3], free_now(agent_id)}
