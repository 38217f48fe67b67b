-- Asterisk is ringing the offered agent (DialBegin).
-- ARGV: P, call_id, agent_id, at, part, off
local ck = call_key(ARGV[2])
if redis.call('EXISTS', ck) == 0 then return {'unknown_call', ''} end
if seen(ck, ARGV[5], ARGV[6]) then return {'duplicate', ''} end
mark(ck, ARGV[5], ARGV[6])
local c = redis.call('HMGET', ck, 'state', 'agent')
if (c[1] == 'offered' or c[1] == 'dispatching') and c[2] == ARGV[3] then
  redis.call('HSET', ck, 'state', 'ringing', 'rang_at', ARGV[4])
  -- From here Asterisk's own ring timeout ends the offer with a DialEnd.
  redis.call('ZREM', P .. 'offers', ARGV[2])
  return {'ringing', c[1]}
end
return {'ignored', c[1]}
