-- The caller accepted a callback (UserEvent AcdCallbackRequested) and hangs up: its call
-- keeps its place in line (entry time unchanged) and no longer overflows; when an agent is
-- reserved for it, the worker calls out instead of redirecting (router/callback.py).
-- ARGV: P, call_id, number, at, part, off, days, agent_first ('1'|'0'), attempts,
--       retry_after_s, sl_from_entry ('1': service level counts from the entry, else from now)
-- Returns {'requested', queue} or {outcome, state}
local call_id, at = ARGV[2], tonumber(ARGV[4])
use_days(ARGV[7])
local ck = call_key(call_id)
if redis.call('EXISTS', ck) == 0 then return {'unknown_call', ''} end
if seen(ck, ARGV[5], ARGV[6]) then return {'duplicate', ''} end
mark(ck, ARGV[5], ARGV[6])
local c = redis.call('HMGET', ck, 'state', 'queue', 'entered_at', 'cb_num')
local queued = c[1] == 'waiting' or c[1] == 'offered' or c[1] == 'dispatching' or c[1] == 'ringing'
if not queued or c[4] then return {'ignored', c[1] or ''} end
local entered = num(c[3], at)
local sl_at = ARGV[11] == '1' and entered or math.max(entered, at)
redis.call('HSET', ck, 'cb_num', ARGV[3], 'cb_req_at', at, 'cb_af', ARGV[8], 'cb_max', ARGV[9],
  'cb_retry_s', ARGV[10], 'cb_attempts', 0, 'cb_sl_at', sl_at)
redis.call('SADD', P .. 'callbacks', call_id)
redis.call('ZREM', P .. 'overflow_due', call_id)
stat(c[2], 'cb_requested', 1, at)
return {'requested', c[2]}
