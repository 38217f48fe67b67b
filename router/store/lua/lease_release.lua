-- Give a lease up (a clean stop): only its holder may, so that the standby need not wait
-- for the TTL. ARGV: P, key_suffix, owner. Returns 1 when owner held it.
local key = P .. ARGV[2]
if redis.call('GET', key) == ARGV[3] then
  redis.call('DEL', key)
  return 1
end
return 0
