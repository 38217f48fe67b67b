-- The dispatcher takes an offer before sending its Redirect; a withdrawn or superseded
-- offer is refused, so a late command never rings an agent for a call routed elsewhere.
-- ARGV: P, call_id, offer_id, deadline, claimant
-- ``claimant`` names one delivery of the command to one dispatcher: when the answer to its
-- claim was lost (a Redis link that hung after the script ran), the same claimant asking
-- again gets its own claim back instead of finding the offer taken and stranding the caller.
-- Any other claimant (a restarted dispatcher, a redelivery) finds it taken: the Redirect may
-- have gone out, and it must never go out twice. An empty claimant claims once.
local ck = call_key(ARGV[2])
local c = redis.call('HMGET', ck, 'state', 'offer_id', 'claimed_by')
if c[1] == 'dispatching' and c[2] == ARGV[3] and ARGV[5] ~= '' and c[3] == ARGV[5] then
  return {'ok', 'dispatching'}
end
if c[1] ~= 'offered' or c[2] ~= ARGV[3] then return {'stale', c[1] or 'unknown'} end
redis.call('HSET', ck, 'state', 'dispatching', 'claimed_by', ARGV[5])
redis.call('ZADD', P .. 'offers', ARGV[4], ARGV[2])
return {'ok', 'dispatching'}
