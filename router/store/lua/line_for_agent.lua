-- The head of the line as one agent may see it: the first calls of the queues it could
-- serve and of the calls with their own requirements, merged in line order (priority,
-- then longest waiting), in one round trip. ARGV: P, queues_json, per_queue, count
-- Returns WAITING_WIDTH fields per call (as waiting_view: push_waiting_call in _lib.lua)
local per_queue, count = tonumber(ARGV[3]), tonumber(ARGV[4])
local heads = {}
local function take(key)
  local page = redis.call('ZRANGE', key, '0', int_text(per_queue - 1), 'WITHSCORES')
  for j = 1, #page, 2 do heads[#heads + 1] = {page[j], tonumber(page[j + 1])} end
end
for _, queue in ipairs(cjson.decode(ARGV[2])) do take(P .. 'waiting:' .. queue) end
take(P .. 'waiting_own')
table.sort(heads, function(x, y)
  if x[2] == y[2] then return x[1] < y[1] end
  return x[2] < y[2]
end)
local out, seen_ids = {}, {}
for _, head in ipairs(heads) do
  local id = head[1]
  if not seen_ids[id] then
    seen_ids[id] = true
    push_waiting_call(out, id)
    if #out >= count * WAITING_WIDTH then break end
  end
end
return out
