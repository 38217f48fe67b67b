-- A waiting call whose queue has just closed and sends its waiting callers away
-- (hours.on_close: send_to_closed): it leaves the ACD to the closed target like an overflow
-- to a target (it was offered, so it counts as 'overflowed' and so does its record). A call
-- being offered right now, or no longer in that queue, is left alone (the next tick looks
-- again).
-- ARGV: P, call_id, queue, at, days
-- Returns {'target', channel} or {'skipped', state}.
local id, queue, at = ARGV[2], ARGV[3], tonumber(ARGV[4])
use_days(ARGV[5])
local c = redis.call('HMGET', call_key(id), 'state', 'queue', 'channel')
if c[1] ~= 'waiting' or c[2] ~= queue then return {'skipped', c[1] or 'unknown'} end
stat(queue, 'overflowed', 1, at)
finish_call(id, 'overflowed', at, 'overflowed')
return {'target', c[3] or ''}
