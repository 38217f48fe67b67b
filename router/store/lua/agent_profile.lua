-- Create or update an agent's profile (skills, capacity, device) from configuration.
-- ARGV: P, agent_id, skills_json, capacity, device, now [, force]
-- Skills an operator set through the API (skills_source = 'api') survive a worker
-- restart: only force = '1' (an explicit configuration reload) puts the configured ones
-- back. Returns 1 when the configured skills were written, 2 when the API's were kept.
local id, now = ARGV[2], tonumber(ARGV[6])
local ak = agent_key(id)
local old = redis.call('HMGET', ak, 'skills', 'device', 'skills_source')
local keep_api_skills = old[3] == 'api' and ARGV[7] ~= '1'
if old[1] then
  unindex(id, old[1])
  unindex_logged_in(id, old[1])
end
if old[2] and old[2] ~= ARGV[5] then redis.call('HDEL', P .. 'devices', old[2]) end
if redis.call('EXISTS', ak) == 0 then
  redis.call('HSET', ak, 'state', 'logged_out', 'reason', '', 'reserved', 0, 'connected', 0,
    'idle_since', now, 'state_since', now, 'handled_s', 0, 'avail_s', 0)
end
if keep_api_skills then
  redis.call('HSET', ak, 'capacity', ARGV[4], 'device', ARGV[5])
else
  redis.call('HSET', ak, 'skills', ARGV[3], 'skills_source', 'config', 'capacity', ARGV[4],
    'device', ARGV[5])
end
redis.call('HSET', P .. 'devices', ARGV[5], id)
redis.call('SADD', P .. 'agents', id)
reindex(id, now)
return keep_api_skills and 2 or 1
