-- Hold or take over a lease (the active ingest, the timer runner, the state collector).
-- ARGV: P, key_suffix, owner, ttl_ms.
-- Returns {token, unbroken}: the holder's fencing token (> 0) when owner holds the lease,
-- 0 when another does; unbroken is 1 when owner began the lease's last term too, so that
-- nobody else held it since (an owner whose key expired on a starved machine and who took
-- it again: nobody else published meanwhile, router/lease.py).
-- The token (<key_suffix>:fence) is raised each time the lease is taken, to the previous
-- one + 1 or Redis' clock in milliseconds, whichever is higher: it only ever grows, even
-- across a Redis that lost its data (restarted without persistence, or a replica promoted
-- before the last raise reached it), which would otherwise count again from 1 below the
-- tokens readers have seen. Whatever a deposed holder sends late carries a lower token than
-- its successor's (router/lease.py, router/fencing.py). <key_suffix>:owner is who took it last.
local key = P .. ARGV[2]
local fence = key .. ':fence'
local last_owner = key .. ':owner'
local function raise()
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  local token = math.max((tonumber(redis.call('GET', fence)) or 0) + 1, now_ms)
  local unbroken = redis.call('GET', last_owner) == ARGV[3] and 1 or 0
  redis.call('SET', fence, string.format('%d', token))
  redis.call('SET', last_owner, ARGV[3])
  return {token, unbroken}
end
local holder = redis.call('GET', key)
if holder == ARGV[3] then
  redis.call('PEXPIRE', key, ARGV[4])
  local token = tonumber(redis.call('GET', fence))
  if token then
    return {token, 1}
  end
  return raise()
end
if not holder then
  redis.call('SET', key, ARGV[3], 'PX', ARGV[4])
  return raise()
end
return {0, 0}
