-- The caller's channel hung up: abandoned if still queued, completed if connected
-- (transferred if its agent had transferred it).
-- ARGV: P, call_id, at, part, off, pbx_cut ('1': Asterisk hung it up while shutting down:
-- a waiting call ends pbx_restart, not abandoned), days (the statistics' days: use_days)
-- Returns {outcome, seconds (waited or talked), queue, agent_id, agent_free} and, when the
-- agent is free, its 8 candidate fields (as the candidates script returns them).
local call_id, at = ARGV[2], time_arg(ARGV[3])
use_days(ARGV[7])
local ck = call_key(call_id)
local c = redis.call('HMGET', ck, 'state', 'queue', 'entered_at', 'agent', 'answered_at', 'sl_t',
  'wrapup_s', 'wm:' .. ARGV[4], 'cb_num', 'xfer_at')
if not c[1] and redis.call('EXISTS', ck) == 0 then return {'unknown_call', '0', '', ''} end
local state, queue, agent_id = c[1], c[2], c[4] or ''
-- A redelivery changes nothing, but says which agent to look at again (follow-up matching).
if seen_since(c[8], ARGV[4], ARGV[5]) then return with_candidate({'duplicate', '0', queue, agent_id}, agent_id) end
mark(ck, ARGV[4], ARGV[5])
local waiting = state == 'waiting' or state == 'offered' or state == 'dispatching' or state == 'ringing'
-- Callbacks (router/callback.py): a caller who asked to be called back hangs up and keeps its
-- place; an offer of its live channel (not a callback attempt) goes back in line.
if waiting and c[9] then
  if state ~= 'waiting' and redis.call('HGET', ck, 'cb_offer') ~= '1' then
    requeue(call_id)
    release_reservation(agent_id, at)
  end
  redis.call('HSET', ck, 'cb_hung_up_at', secs(at))
  return with_candidate({'callback_kept', '0', queue, agent_id}, agent_id)
end
if waiting and ARGV[6] == '1' then
  finish_call(call_id, 'pbx_restart', at, 'pbx_restart')
  release_reservation(agent_id, at)
  stat(queue, 'ended_by_pbx_restart', 1, at)
  return with_candidate({'pbx_restart', secs(math.max(0, at - num(c[3], at))), queue, agent_id}, agent_id)
end
if waiting then
  finish_call(call_id, 'abandoned', at, 'abandoned')
  release_reservation(agent_id, at)
  local waited = math.max(0, at - num(c[3], at))
  record_abandon(queue, waited, num(c[6], 0), at)
  return with_candidate({'abandoned', secs(waited), queue, agent_id}, agent_id)
end
if state == 'connected' and c[10] then
  -- Transferred, and the agent's leg was never seen ending: the agent is done by now.
  local talk = end_transferred_call(call_id, at)
  return with_candidate({'transferred', secs(talk), queue, agent_id}, agent_id)
end
-- 'transferred' too: the caller hung up after the ACD handed it on; nothing to count.
if state ~= 'connected' then return {'ignored', '0', queue, agent_id} end
local talk = math.max(0, at - num(c[5], at))
local wrapping = agent_call_done(agent_id, queue, talk, num(c[7], 0), at)
finish_call(call_id, 'completed', at, 'answered', wrapping)
stat(queue, 'completed', 1, at)
statf(queue, 'talk_sum', talk, at)
return with_candidate({'completed', secs(talk), queue, agent_id}, agent_id)
