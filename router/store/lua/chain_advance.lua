-- Where each key's envelope chain stands (router.sequencing): "session:seq" per key, only
-- ever moved forward, so that a slow worker's late write cannot move a chain back.
-- ARGV: P, ttl_ms, then triples key, session, seq.
local ttl = tonumber(ARGV[2])
for i = 3, #ARGV, 3 do
  local k = P .. 'chain:' .. ARGV[i]
  local session, seq = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local old_session, old_seq = split_position(redis.call('GET', k))
  if session > old_session or (session == old_session and seq > old_seq) then
    redis.call('SET', k, ARGV[i + 1] .. ':' .. ARGV[i + 2], 'PX', ttl)
  else
    redis.call('PEXPIRE', k, ttl)
  end
end
return 0
