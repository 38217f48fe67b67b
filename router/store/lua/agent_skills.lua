-- An operator changes an agent's skills (API). ARGV: P, agent_id, mode, skills_json, now
-- mode 'replace': skills_json is the new skill set; 'merge': its entries are set, and an
-- entry whose level is 0 removes that skill. The profile remembers skills_source = 'api',
-- so a worker restart keeps these skills (agent_profile.lua without force); an explicit
-- configuration reload puts the configured ones back.
-- Returns {'ok', skills_json} or {'unknown_agent', ''}
local id, mode, now = ARGV[2], ARGV[3], tonumber(ARGV[5])
local ak = agent_key(id)
if redis.call('SISMEMBER', P .. 'agents', id) == 0 or redis.call('EXISTS', ak) == 0 then
  return {'unknown_agent', ''}
end
local old = redis.call('HGET', ak, 'skills') or '{}'
local skills = cjson.decode(ARGV[4])
if mode == 'merge' then
  local ok, merged = pcall(cjson.decode, old)
  if not ok or type(merged) ~= 'table' then merged = {} end
  for skill, level in pairs(skills) do
    if tonumber(level) == 0 then merged[skill] = nil else merged[skill] = level end
  end
  skills = merged
end
local encoded = next(skills) == nil and '{}' or cjson.encode(skills)
-- Out of every index under the old skills, back in under the new ones.
unindex(id, old)
unindex_logged_in(id, old)
redis.call('HSET', ak, 'skills', encoded, 'skills_source', 'api', 'skills_changed_at', now)
reindex(id, now)
nudge({agent = id})
return {'ok', encoded}
