-- Hold or take over a lease (the active ingest, the timer runner, the state collector).
-- ARGV: P, key_suffix, owner, ttl_ms.
-- Returns the holder's fencing token (> 0) when owner holds the lease, 0 when another does.
-- The token (<key_suffix>:fence) is raised each time the lease changes hands, to the
-- previous one + 1 or Redis' clock in milliseconds, whichever is higher: it only ever grows,
-- even across a Redis that lost its data (restarted without persistence, or a replica
-- promoted before the last raise reached it), which would otherwise count again from 1
-- below the tokens readers have seen. Whatever a deposed holder sends late carries a lower
-- token than its successor's (router/lease.py, router/fencing.py).
local key = P .. ARGV[2]
local fence = key .. ':fence'
local function raise()
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  local token = math.max((tonumber(redis.call('GET', fence)) or 0) + 1, now_ms)
  redis.call('SET', fence, string.format('%d', token))
  return token
end
local holder = redis.call('GET', key)
if holder == ARGV[3] then
  redis.call('PEXPIRE', key, ARGV[4])
  return tonumber(redis.call('GET', fence)) or raise()
end
if not holder then
  redis.call('SET', key, ARGV[3], 'PX', ARGV[4])
  return raise()
end
return 0
