-- Available agents that meet every requirement term, longest idle first.
-- ARGV: P, terms_json, limit, exclude_json, max_scan
-- terms_json: [[[skill, level], ...alternatives], ...terms]; [] = any available agent.
-- Returns a flat list, 8 fields per agent: id, idle_since, skills, capacity, reserved,
-- connected, handled_s, avail_s.
local terms = cjson.decode(ARGV[2])
local limit, max_scan = tonumber(ARGV[3]), tonumber(ARGV[5])
local exclude = {}
for _, id in ipairs(cjson.decode(ARGV[4])) do exclude[id] = true end

local function term_keys(term)
  local keys = {}
  for _, alt in ipairs(term) do keys[#keys + 1] = P .. 'avail:' .. alt[1] .. ':' .. alt[2] end
  return keys
end

-- Drive the scan from the smallest term so that no decision walks every agent.
local driver, driver_size = nil, math.huge
for i, term in ipairs(terms) do
  local size = 0
  for _, k in ipairs(term_keys(term)) do size = size + redis.call('ZCARD', k) end
  if size < driver_size then driver, driver_size = i, size end
end
local driver_keys = driver and term_keys(terms[driver]) or {P .. 'available'}

local function meets_others(id)
  for i, term in ipairs(terms) do
    if i ~= driver then
      local ok = false
      for _, k in ipairs(term_keys(term)) do
        if redis.call('ZSCORE', k, id) then ok = true break end
      end
      if not ok then return false end
    end
  end
  return true
end

local found, picked = {}, {}
for _, key in ipairs(driver_keys) do
  local scanned, start = 0, 0
  while #found < limit * #driver_keys and scanned < max_scan do
    local page = redis.call('ZRANGE', key, start, start + 99, 'WITHSCORES')
    if #page == 0 then break end
    for j = 1, #page, 2 do
      local id = page[j]
      scanned = scanned + 1
      if not exclude[id] and not picked[id] and meets_others(id) then
        picked[id] = true
        found[#found + 1] = {id, tonumber(page[j + 1])}
      end
    end
    start = start + 100
  end
end
table.sort(found, function(x, y)
  if x[2] == y[2] then return x[1] < y[1] end
  return x[2] < y[2]
end)
local out = {}
for i = 1, math.min(limit, #found) do
  local id = found[i][1]
  local a = redis.call('HMGET', agent_key(id), 'idle_since', 'skills', 'capacity', 'reserved',
    'connected', 'handled_s', 'avail_s')
  out[#out + 1] = id
  for f = 1, 7 do out[#out + 1] = a[f] or '' end
end
return out
