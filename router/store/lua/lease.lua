-- Hold or take over a lease (the active ingest, the timer runner, the state collector).
-- ARGV: P, key_suffix, owner, ttl_ms.
-- Returns the holder's fencing token (> 0) when owner holds the lease, 0 when another does.
-- The token is a counter (<key_suffix>:fence) raised each time the lease changes hands, so
-- it only ever grows: whatever a deposed holder sends late carries a lower token than its
-- successor's (router/lease.py, docs/architecture.md "Leases").
local key = P .. ARGV[2]
local fence = key .. ':fence'
local holder = redis.call('GET', key)
if holder == ARGV[3] then
  redis.call('PEXPIRE', key, ARGV[4])
  return tonumber(redis.call('GET', fence)) or redis.call('INCR', fence)
end
if not holder then
  redis.call('SET', key, ARGV[3], 'PX', ARGV[4])
  return redis.call('INCR', fence)
end
return 0
