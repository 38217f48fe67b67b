-- A caller entered a queue. Idempotent: a call already known is left as it is, except a
-- caller its agent transferred back into the ACD ([acd-inbound]): that is a new wait in
-- the queue it announces (a redelivery of the same envelope still changes nothing).
-- ARGV: P, call_id, queue, priority, reqs ('' = queue's), channel, entered_at,
--       relax_due ('' = none), overflow_due ('' = none), sl_threshold, wrapup_s,
--       priority_explicit ('1' when the call set its own priority), part, off,
--       terms_json, limit, max_scan (optional: also return the candidates for these
--       requirements, saving the routing decision a round trip), requeue ('1': a live
--       announcement may bring a transferred call back; resync listings may not),
--       caller_number, caller_name (from the AMI, '' unknown), requirements in force
--       now (for the call's record), days, qa (the queue's sampling: 'share minimum
--       record', '' none), aff (the agent it waits for first: 'kind agent until released',
--       '' none; router/affinity.py), aff_win (seconds its agent is remembered for the
--       caller's number once it answers, '' not at all; a caller transferred back waits
--       for nobody in particular)
-- Returns {'queued', 'waiting'} or {'requeued', agent_released ('' = none)}, then the
-- candidates; or {'exists', state}.
-- The queue's service-level threshold and wrap-up time travel with the call, so that a
-- configuration change does not re-judge calls already in flight.
local id = ARGV[2]
use_days(ARGV[22])
local ck = call_key(id)
local requeued = false
local released = ''
local aff = ARGV[24] or ''
if redis.call('EXISTS', ck) == 1 then
  local state = redis.call('HGET', ck, 'state')
  if not back_from_transfer(ck, state, ARGV[18]) or seen(ck, ARGV[13], ARGV[14]) then
    return {'exists', state}
  end
  requeued, released = true, forget_transfer(id, ck, state, tonumber(ARGV[7]))
  -- Its last agent is the one who just transferred it: no affinity (router/affinity.py).
  aff = ''
end
local priority, entered_at = tonumber(ARGV[4]), time_arg(ARGV[7])
local fields = {'state', 'waiting', 'queue', ARGV[3], 'priority', ARGV[4],
  'reqs', ARGV[5], 'channel', ARGV[6], 'entered_at', secs(entered_at),
  'agent', '', 'offer_id', '', 'sl_t', ARGV[10], 'wrapup_s', ARGV[11], 'prio_set', ARGV[12],
  'hops', '0', 'caller_num', ARGV[19] or '', 'caller_name', ARGV[20] or '', 'reqs_now', ARGV[21] or '',
  'qa', ARGV[23] or '', 'aff', aff, 'aff_win', ARGV[25] or ''}
if requeued then
  redis.call('HSET', ck, unpack(fields))
  redis.call('HSETNX', ck, 'first_entered_at', secs(entered_at))
  redis.call('HSETNX', ck, 'first_queue', ARGV[3])
  -- A caller its agent transferred back into a queue starts its next visit (its records').
  redis.call('HINCRBY', ck, 'segment', '1')
  mark(ck, ARGV[13], ARGV[14])
else
  -- A new call: its first visit, and the event's position, in the same write.
  local n = #fields
  fields[n + 1], fields[n + 2] = 'first_entered_at', secs(entered_at)
  fields[n + 3], fields[n + 4] = 'first_queue', ARGV[3]
  fields[n + 5], fields[n + 6] = 'segment', '1'
  if ARGV[13] ~= '' then fields[n + 7], fields[n + 8] = 'wm:' .. ARGV[13], ARGV[14] end
  redis.call('HSET', ck, unpack(fields))
end
hold_for(id, aff)
line_add(id, ARGV[3], waiting_score(priority, entered_at), ARGV[5] ~= '')
redis.call('SADD', P .. 'open_calls', id)
if ARGV[8] ~= '' then redis.call('ZADD', P .. 'relax_due', ARGV[8], id) end
if ARGV[9] ~= '' then redis.call('ZADD', P .. 'overflow_due', ARGV[9], id) end
stat(ARGV[3], 'offered', 1, entered_at)
local out = {'queued', 'waiting'}
if requeued then
  -- Counted as offered to the queue again; transfer_in lets a site total count it once.
  stat(ARGV[3], 'transfer_in', 1, entered_at)
  out = {'requeued', released}
end
if (ARGV[15] or '') ~= '' then
  for _, field in ipairs(find_candidates(cjson.decode(ARGV[15]), tonumber(ARGV[16]), {}, tonumber(ARGV[17]))) do
    out[#out + 1] = field
  end
end
return out
