-- The caller's channel went (back) on hold. After a Redirect that never produced a Dial
-- (Asterisk sends no DialBegin/DialEnd when the agent's phone is unavailable) this is the
-- only sign the offer failed: decline it like a no-answer. It counts only when the caller
-- left hold for this very offer first (caller_left_hold): the caller's first hold can be
-- announced after the offer was made (on a loaded PBX MusicOnHoldStart trails the
-- UserEvent), and times from different processes are never compared.
-- ARGV: P, call_id, at, auto_pause ('1'|'0'), pause_reason, part, off, days
-- Returns {'declined', paused, agent_id} or {outcome, state, ''}
local call_id, at = ARGV[2], tonumber(ARGV[3])
use_days(ARGV[8])
local ck = call_key(call_id)
if redis.call('EXISTS', ck) == 0 then return {'unknown_call', '', ''} end
if seen(ck, ARGV[6], ARGV[7]) then return {'duplicate', '', ''} end
mark(ck, ARGV[6], ARGV[7])
local c = redis.call('HMGET', ck, 'state', 'agent', 'queue', 'offer_id', 'left_hold_offer')
if (c[1] ~= 'offered' and c[1] ~= 'dispatching') or not c[4] or c[4] == '' or c[5] ~= c[4] then
  return {'ignored', c[1], ''}
end
return {'declined', decline_offer(call_id, c[2], c[3], at, ARGV[4], ARGV[5]), c[2]}
