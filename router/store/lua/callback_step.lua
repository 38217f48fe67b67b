-- A step of a callback attempt (router/callback.py): leg 1 is the channel Originate rang,
-- leg 2 the one the dialplan dialled; cb_af says which is the agent's (agent first: leg 1).
-- ARGV: P, call_id, offer_id, step ('answered1'|'answered2'|'failed1'|'failed2'|'ended'),
--       at, part, off, days, auto_pause ('1'|'0'), pause_reason
-- Returns {status, detail, queue, agent_id} then the agent's candidate (with_candidate):
--   noted (the first leg answered), answered (detail: wait counted for service level),
--   completed (detail: talk seconds), rejected (the agent's leg was not answered: back in
--   line at once, never offered to that agent again; detail '1' when it was paused),
--   retry / callback_failed (the caller's leg was not answered), ignored, duplicate.
local call_id, offer_id, step, at = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
use_days(ARGV[8])
local ck = call_key(call_id)
if redis.call('EXISTS', ck) == 0 then return {'unknown_call', '0', '', ''} end
local c = redis.call('HMGET', ck, 'state', 'offer_id', 'agent', 'queue', 'cb_af', 'cb_sl_at', 'sl_t',
  'answered_at', 'wrapup_s', 'decision', 'reqs_now')
local state, agent_id, queue = c[1], c[3] or '', c[4] or ''
if seen(ck, ARGV[6], ARGV[7]) then return with_candidate({'duplicate', '0', queue, agent_id}, agent_id) end
mark(ck, ARGV[6], ARGV[7])
if c[2] ~= offer_id then return {'ignored', '0', queue, ''} end
local pending = state == 'offered' or state == 'dispatching'

if step == 'ended' and state == 'connected' then
  local talk = math.max(0, at - num(c[8], at))
  local wrapping = agent_call_done(agent_id, queue, talk, num(c[9], 0), at)
  finish_call(call_id, 'completed', at, 'answered', wrapping)
  stat(queue, 'completed', 1, at)
  statf(queue, 'talk_sum', talk, at)
  return with_candidate({'completed', secs(talk), queue, agent_id}, agent_id)
end
if not pending then return {'ignored', '0', queue, ''} end
if step == 'ended' then  -- the attempt's channel hung up before both legs answered
  -- Unanswered, its Hangup may come before its OriginateResponse (Asterisk sends them in
  -- either order): that leg failed (the agent's when agent first: a rejection), and the
  -- response that follows finds the attempt over. Answered, the second leg did not (or it
  -- gave up on it).
  if redis.call('HGET', ck, 'cb_first') == '1' then
    return with_candidate({callback_attempt_failed(call_id, at), '0', queue, agent_id}, agent_id)
  end
  step = 'failed1'
end

local leg = string.sub(step, -1)
local agent_leg = c[5] == '1' and '1' or '2'
if string.sub(step, 1, 6) == 'failed' then
  if leg == agent_leg then
    stat(queue, 'cb_rejected', 1, at)
    local paused = decline_offer(call_id, agent_id, queue, at, ARGV[9], ARGV[10])
    redis.call('HSET', ck, 'cb_offer', '', 'cb_first', '')
    return with_candidate({'rejected', paused, queue, agent_id}, agent_id)
  end
  return with_candidate({callback_attempt_failed(call_id, at), '0', queue, agent_id}, agent_id)
end
if leg == '1' then
  redis.call('HSET', ck, 'cb_first', '1')
  return {'noted', '0', queue, agent_id}
end

-- Both legs answered: connected, counted like any answer (its wait from cb_sl_at).
connect_call(ck, call_id, agent_id, c[10], c[11], at)
local wait = math.max(0, at - num(c[6], at))
stat(queue, 'answered', 1, at)
stat(queue, 'cb_answered', 1, at)
statf(queue, 'answer_wait_sum', wait, at)
if wait <= num(c[7], 0) then stat(queue, 'answered_within', 1, at) end
return with_candidate({'answered', secs(wait), queue, agent_id}, agent_id)
