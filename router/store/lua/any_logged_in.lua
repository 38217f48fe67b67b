-- Is at least one logged-in agent (any state but logged_out) qualified for these
-- requirements? ARGV: P, terms_json ([[[skill, level], ...alternatives], ...terms])
-- Returns 1 or 0.
local terms = cjson.decode(ARGV[2])
if #terms == 0 then return redis.call('SCARD', P .. 'logged_in') > 0 and 1 or 0 end
local function member_of(term, id)
  for _, k in ipairs(term_keys(term, 'in_skill')) do
    if redis.call('SISMEMBER', k, id) == 1 then return true end
  end
  return false
end
-- Walk the smallest term's members and check the others.
local driver, size = 1, math.huge
for i, term in ipairs(terms) do
  local n = 0
  for _, k in ipairs(term_keys(term, 'in_skill')) do n = n + redis.call('SCARD', k) end
  if n < size then driver, size = i, n end
end
if size == 0 then return 0 end
for _, k in ipairs(term_keys(terms[driver], 'in_skill')) do
  for _, id in ipairs(redis.call('SMEMBERS', k)) do
    local ok = true
    for i, term in ipairs(terms) do
      if i ~= driver and not member_of(term, id) then ok = false break end
    end
    if ok then return 1 end
  end
end
return 0
