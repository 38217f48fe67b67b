-- Hold or take over a lease (one timer runner, one state collector per site).
-- ARGV: P, key_suffix, owner, ttl_ms. Returns 1 when owner holds the lease.
local key = P .. ARGV[2]
local holder = redis.call('GET', key)
if holder == ARGV[3] then
  redis.call('PEXPIRE', key, ARGV[4])
  return 1
end
if not holder then
  redis.call('SET', key, ARGV[3], 'PX', ARGV[4])
  return 1
end
return 0
