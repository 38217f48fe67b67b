-- Music on hold stopped on the caller's channel. While an offer is out, that is its
-- Redirect taking the caller off hold: remember which offer, so that the caller's next
-- hold can be read as that offer failing (see caller_held).
-- ARGV: P, call_id, at, part, off
local ck = call_key(ARGV[2])
if redis.call('EXISTS', ck) == 0 then return {'unknown_call', ''} end
if seen(ck, ARGV[4], ARGV[5]) then return {'duplicate', ''} end
mark(ck, ARGV[4], ARGV[5])
local c = redis.call('HMGET', ck, 'state', 'offer_id')
if c[1] ~= 'offered' and c[1] ~= 'dispatching' then return {'ignored', c[1] or ''} end
redis.call('HSET', ck, 'left_hold_offer', c[2] or '')
return {'noted', c[1]}
