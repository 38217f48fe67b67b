-- Create or update an agent's profile (skills, capacity, device) from configuration.
-- ARGV: P, agent_id, skills_json, capacity, device, now
local id, now = ARGV[2], tonumber(ARGV[6])
local ak = agent_key(id)
local old = redis.call('HMGET', ak, 'skills', 'device')
if old[1] then unindex(id, old[1]) end
if old[2] and old[2] ~= ARGV[5] then redis.call('HDEL', P .. 'devices', old[2]) end
if redis.call('EXISTS', ak) == 0 then
  redis.call('HSET', ak, 'state', 'logged_out', 'reason', '', 'reserved', 0, 'connected', 0,
    'idle_since', now, 'state_since', now, 'handled_s', 0, 'avail_s', 0)
end
redis.call('HSET', ak, 'skills', ARGV[3], 'capacity', ARGV[4], 'device', ARGV[5])
redis.call('HSET', P .. 'devices', ARGV[5], id)
redis.call('SADD', P .. 'agents', id)
reindex(id, now)
return 1
