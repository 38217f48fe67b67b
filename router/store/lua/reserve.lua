-- Offer a waiting call to an available agent, atomically: the only place an agent's
-- capacity is taken, so no interleaving of workers can offer it more calls than it holds.
-- ARGV: P, call_id, agent_id, offer_id, now, deadline, decision_json
-- Returns {'ok', device, available_seconds_accrued, callback number, agent_first, caller_name}
-- (the last three '' unless the caller asked to be called back) or {refusal, detail}
local call_id, agent_id, now = ARGV[2], ARGV[3], time_arg(ARGV[5])
local ck, ak = call_key(call_id), agent_key(agent_id)
-- Read once: what the checks need, and what the offer's writes build on (one HSET each).
local c = redis.call('HMGET', ck, 'state', 'queue', 'cb_num', 'cb_af', 'caller_name', 'offers',
  'first_offered_at', 'declines')
if not c[1] then return {'unknown_call', ''} end
if c[1] ~= 'waiting' then return {'call_taken', c[1]} end
local a = redis.call('HMGET', ak, 'state', 'capacity', 'reserved', 'connected', 'device', 'dev_busy')
if not a[1] then return {'unknown_agent', ''} end
if a[1] ~= 'available' or num(a[3], 0) + num(a[4], 0) >= num(a[2], 1) then
  return {'agent_taken', a[1]}
end
-- The phone is unavailable (or busy with a call the ACD did not give it): never offer.
if a[6] == '1' then return {'agent_taken', 'device_busy'} end
-- 'declines' is set with the first decline (decline_offer): no set to look in before it.
if c[8] and redis.call('SISMEMBER', P .. 'declined:' .. call_id, agent_id) == 1 then
  return {'agent_declined', ''}
end
-- Callbacks (router/callback.py): the caller hung up to be called back; this offer calls out.
-- For the call's record: offers made, and the first.
redis.call('HSET', ck, 'state', 'offered', 'agent', agent_id, 'offer_id', ARGV[4],
  'offered_at', ARGV[5], 'decision', ARGV[7], 'cb_offer', c[3] and '1' or '',
  'offers', int_text(num(c[6], 0) + 1), 'first_offered_at', c[7] or ARGV[5])
line_remove(call_id, c[2])
redis.call('ZADD', P .. 'offers', ARGV[6], call_id)
redis.call('HSET', ak, 'reserved', int_text(num(a[3], 0) + 1), 'last_call', call_id)
redis.call('HSET', P .. 'rr', c[2], agent_id)
local accrued = reindex(agent_id, now)
redis.call('XADD', P .. 'decisions', 'MAXLEN', '~', '100000', '*', 'd', ARGV[7])
return {'ok', a[5] or '', tostring(accrued), c[3] or '', c[4] or '', c[5] or ''}
