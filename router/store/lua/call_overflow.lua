-- Overflow a waiting call: to another queue (a new entry there, the caller keeps waiting)
-- or out of the ACD to a dialplan target (final; the dispatcher redirects the caller).
-- A call that is being offered right now is left alone and looked at again shortly.
-- ARGV: P, call_id, at, from_queue, to_queue ('' = to a target), priority ('' = keep),
--       sl_threshold, wrapup_s, relax_due ('' = none), overflow_due ('' = none), max_hops,
--       requirements (in force in the new queue now, for the call's record), days,
--       qa (the new queue's sampling: 'share minimum record', '' none)
-- (priority: the new queue's default, used unless the call set its own)
-- Returns {'queued'|'target', channel} or {'busy'|'ignored'|'loop', state}
local call_id, at, from_queue = ARGV[2], tonumber(ARGV[3]), ARGV[4]
use_days(ARGV[13])
local ck = call_key(call_id)
local c = redis.call('HMGET', ck, 'state', 'queue', 'channel', 'priority', 'hops', 'prio_set')
if c[1] == 'offered' or c[1] == 'dispatching' or c[1] == 'ringing' then
  redis.call('ZADD', P .. 'overflow_due', at + 1, call_id)
  return {'busy', c[1]}
end
if c[1] ~= 'waiting' or c[2] ~= from_queue then
  redis.call('ZREM', P .. 'overflow_due', call_id)
  return {'ignored', c[1] or 'unknown'}
end
stat(from_queue, 'overflowed', 1, at)
if ARGV[5] == '' then
  finish_call(call_id, 'overflowed', at, 'overflowed')
  return {'target', c[3] or ''}
end
local hops = num(c[5], 0) + 1
if hops > tonumber(ARGV[11]) then
  -- A chain of overflows that loops: keep the call where it is rather than bounce forever.
  redis.call('ZREM', P .. 'overflow_due', call_id)
  return {'loop', c[2]}
end
-- A priority the call set itself (ACD_PRIORITY) travels with it; otherwise the new queue's.
local priority = num(c[4], 0)
if c[6] ~= '1' and ARGV[6] ~= '' then priority = tonumber(ARGV[6]) end
line_remove(call_id, c[2])
redis.call('HSET', ck, 'queue', ARGV[5], 'entered_at', at, 'priority', priority, 'reqs', '',
  'sl_t', ARGV[7], 'wrapup_s', ARGV[8], 'hops', hops, 'reqs_now', ARGV[12] or '', 'qa', ARGV[14] or '',
  'aff', '')  -- a wait for one agent (router/affinity.py) ends with the queue it was made in
line_add(call_id, ARGV[5], waiting_score(priority, at), false)
redis.call('ZREM', P .. 'relax_due', call_id)
redis.call('ZREM', P .. 'overflow_due', call_id)
if ARGV[9] ~= '' then redis.call('ZADD', P .. 'relax_due', ARGV[9], call_id) end
if ARGV[10] ~= '' then redis.call('ZADD', P .. 'overflow_due', ARGV[10], call_id) end
stat(ARGV[5], 'offered', 1, at)
stat(ARGV[5], 'overflow_in', 1, at)
return {'queued', c[3] or ''}
