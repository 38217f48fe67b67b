-- Available agents that meet every requirement term, longest idle first.
-- ARGV: P, terms_json, limit, exclude_json, max_scan
-- terms_json: [[[skill, level], ...alternatives], ...terms]; [] = any available agent.
-- Returns a flat list, 8 fields per agent: id, idle_since, skills, capacity, reserved,
-- connected, handled_s, avail_s.
local exclude = {}
for _, id in ipairs(cjson.decode(ARGV[4])) do exclude[id] = true end
return find_candidates(cjson.decode(ARGV[2]), tonumber(ARGV[3]), exclude, tonumber(ARGV[5]))
