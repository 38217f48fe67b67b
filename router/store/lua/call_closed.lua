-- A caller arrived while its queue is closed (business hours, router/schedule.py): the call
-- is turned away to the queue's closed target, never offered to an agent. It is counted as
-- 'closed', not 'offered', and its record's outcome is 'closed'. Idempotent: a call already
-- known is left as it is (a redelivery of its own arrival, or a call already in the ACD).
-- ARGV: P, call_id, queue, priority, channel, at, part, off, sl_threshold, caller_number,
--       caller_name, days
-- Returns {'closed', channel} or {'exists', state, channel}.
local id, queue, at = ARGV[2], ARGV[3], tonumber(ARGV[6])
use_days(ARGV[12])
local ck = call_key(id)
if redis.call('EXISTS', ck) == 1 then
  local c = redis.call('HMGET', ck, 'state', 'channel')
  return {'exists', c[1] or '', c[2] or ''}
end
redis.call('HSET', ck, 'state', 'closed', 'queue', queue, 'priority', tonumber(ARGV[4]),
  'reqs', '', 'channel', ARGV[5], 'entered_at', at, 'first_entered_at', at, 'first_queue', queue,
  'agent', '', 'offer_id', '', 'sl_t', ARGV[9], 'hops', 0, 'caller_num', ARGV[10],
  'caller_name', ARGV[11], 'segment', 1)
mark(ck, ARGV[7], ARGV[8])
stat(queue, 'closed', 1, at)
finish_call(id, 'closed', at, 'closed')
return {'closed', ARGV[5]}
