-- The dispatcher could not execute an offer. If the caller's channel is gone the call
-- was abandoned (its Hangup may still follow and then changes nothing); otherwise it
-- goes back to its place in line. Either way the agent is released.
-- ARGV: P, call_id, offer_id, at, channel_gone ('1'|'0'), part, off, days
local call_id, at = ARGV[2], tonumber(ARGV[4])
use_days(ARGV[8])
local ck = call_key(call_id)
if redis.call('EXISTS', ck) == 0 then return {'unknown_call', '', ''} end
if seen(ck, ARGV[6], ARGV[7]) then return {'duplicate', '', ''} end
mark(ck, ARGV[6], ARGV[7])
local c = redis.call('HMGET', ck, 'state', 'offer_id', 'agent', 'queue', 'entered_at', 'sl_t')
if (c[1] ~= 'offered' and c[1] ~= 'dispatching') or c[2] ~= ARGV[3] then
  return {'ignored', c[1], ''}
end
local agent_id = c[3] or ''
-- Callbacks (router/callback.py): an Originate refused is an attempt that came to nothing;
-- a caller who asked to be called back is not abandoned by its channel being gone.
local callback = redis.call('HMGET', ck, 'cb_num', 'cb_offer')
if callback[2] == '1' then
  return {callback_attempt_failed(call_id, at), '', agent_id, c[4]}
end
if ARGV[5] == '1' and not callback[1] then
  finish_call(call_id, 'abandoned', at, 'abandoned')
  local waited = math.max(0, at - num(c[5], at))
  record_abandon(c[4], waited, num(c[6], 0), at)
  release_reservation(agent_id, at)
  return {'abandoned', secs(waited), agent_id, c[4]}
end
requeue(call_id)
release_reservation(agent_id, at)
return {'requeued', '', agent_id}
