-- A caller entered a queue. Idempotent: a call already known is left as it is.
-- ARGV: P, call_id, queue, priority, reqs_json ('' = queue's), channel, entered_at,
--       relax_due ('' = none), sl_threshold, wrapup_s, part, off
-- The queue's service-level threshold and wrap-up time travel with the call, so that a
-- configuration change does not re-judge calls already in flight.
local id = ARGV[2]
local ck = call_key(id)
if redis.call('EXISTS', ck) == 1 then return {'exists', redis.call('HGET', ck, 'state')} end
local priority, entered_at = tonumber(ARGV[4]), tonumber(ARGV[7])
redis.call('HSET', ck, 'state', 'waiting', 'queue', ARGV[3], 'priority', priority,
  'reqs', ARGV[5], 'channel', ARGV[6], 'entered_at', entered_at, 'agent', '', 'offer_id', '',
  'sl_t', ARGV[9], 'wrapup_s', ARGV[10])
mark(ck, ARGV[11], ARGV[12])
redis.call('ZADD', P .. 'waiting', waiting_score(priority, entered_at), id)
redis.call('SADD', P .. 'open_calls', id)
if ARGV[8] ~= '' then redis.call('ZADD', P .. 'relax_due', ARGV[8], id) end
redis.call('HINCRBY', stats_key(ARGV[3]), 'offered', 1)
return {'queued', 'waiting'}
