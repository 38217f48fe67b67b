-- The offered agent answered (DialEnd ANSWER): the call is connected, and quality sampling
-- decides in the same step whether it is reviewed and recorded (qa_sample in _lib.lua).
-- ARGV: P, call_id, agent_id, at, part, off, days (use_days), qa_seed, recording stem
--       (the file name without extension: 'acd-<call id>', made safe by the caller)
-- Remembers the agent for the caller's number when the call's queue keeps last agents.
-- Returns {'answered', wait_seconds, queue, agent_free, qa_reason ('' not sampled, 'random',
-- 'minimum'), recording ('' none), record_now ('1': start recording the caller's channel),
-- channel} or {outcome, state}
local call_id, agent_id, at = ARGV[2], ARGV[3], time_arg(ARGV[4])
use_days(ARGV[7])
local ck = call_key(call_id)
local c = redis.call('HMGET', ck, 'state', 'agent', 'queue', 'entered_at', 'sl_t', 'decision', 'reqs_now',
  'channel', 'caller_num', 'aff_win', 'wm:' .. ARGV[5])
if not c[1] and redis.call('EXISTS', ck) == 0 then return {'unknown_call', ''} end
if seen_since(c[11], ARGV[5], ARGV[6]) then return {'duplicate', ''} end
mark(ck, ARGV[5], ARGV[6])
local offered = c[1] == 'offered' or c[1] == 'dispatching' or c[1] == 'ringing'
if not offered or c[2] ~= agent_id then return {'ignored', c[1]} end
-- The call's record keeps why this agent was chosen and the requirements it was chosen for.
connect_call(ck, call_id, agent_id, c[6], c[7], at)
-- The caller's last agent (router/affinity.py), for its next call within the window: the
-- expiry is in real seconds, at least the window in simulated ones; readers check the time.
local window = num(c[10], 0)
if window > 0 and (c[9] or '') ~= '' then
  redis.call('SET', P .. 'last_agent:' .. c[9], agent_id .. ' ' .. secs(at), 'EX', math.ceil(window))
end
local wait = math.max(0, at - num(c[4], at))
stat(c[3], 'answered', 1, at)
statf(c[3], 'answer_wait_sum', wait, at)
if wait <= num(c[5], 0) then stat(c[3], 'answered_within', 1, at) end
local qa_reason, recording, record_now = qa_sample(ck, call_id, agent_id, at, ARGV[8] or '', ARGV[9] or '')
return {'answered', secs(wait), c[3], free_now(agent_id), qa_reason, recording, record_now, c[8] or ''}
