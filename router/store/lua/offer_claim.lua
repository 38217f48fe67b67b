-- The dispatcher takes an offer before sending its Redirect; a withdrawn or superseded
-- offer is refused, so a late command never rings an agent for a call routed elsewhere.
-- ARGV: P, call_id, offer_id, deadline
local ck = call_key(ARGV[2])
local c = redis.call('HMGET', ck, 'state', 'offer_id')
if c[1] ~= 'offered' or c[2] ~= ARGV[3] then return {'stale', c[1] or 'unknown'} end
redis.call('HSET', ck, 'state', 'dispatching')
redis.call('ZADD', P .. 'offers', ARGV[4], ARGV[2])
return {'ok', 'dispatching'}
