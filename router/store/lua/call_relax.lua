-- A waiting call's requirements relaxed (the timer): when they relax next, and those in
-- force now, which its record keeps (set only while it waits: an ended call's hash is left
-- to expire). ARGV: P, call_id, due ('' = never again), requirements
local call_id = ARGV[2]
if ARGV[3] == '' then
  redis.call('ZREM', P .. 'relax_due', call_id)
else
  redis.call('ZADD', P .. 'relax_due', ARGV[3], call_id)
end
local ck = call_key(call_id)
if redis.call('HGET', ck, 'state') == 'waiting' then redis.call('HSET', ck, 'reqs_now', ARGV[4]) end
return 0
