-- Site-wide state for the gauges, in one round trip. ARGV: P
-- Returns {queue1, waiting1, oldest_entered_at1, ..., '|', state1, count1, ...}
-- A call counts as waiting until it is answered (offered and ringing included: the
-- caller still waits). Agents count by what they are doing: on a call or reserved
-- first, then their presence state.
local waiting, oldest = {}, {}
for _, id in ipairs(redis.call('SMEMBERS', P .. 'open_calls')) do
  local c = redis.call('HMGET', call_key(id), 'state', 'queue', 'entered_at')
  if c[1] and c[1] ~= 'connected' then
    local q = c[2] or ''
    waiting[q] = (waiting[q] or 0) + 1
    local at = num(c[3], 0)
    if oldest[q] == nil or at < oldest[q] then oldest[q] = at end
  end
end
local out = {}
for q, n in pairs(waiting) do
  out[#out + 1] = q
  out[#out + 1] = n
  out[#out + 1] = tostring(oldest[q])
end
out[#out + 1] = '|'
local states = {}
for _, id in ipairs(redis.call('SMEMBERS', P .. 'agents')) do
  local a = redis.call('HMGET', agent_key(id), 'state', 'reserved', 'connected')
  local s = a[1] or 'logged_out'
  if num(a[3], 0) > 0 then s = 'on_call' elseif num(a[2], 0) > 0 then s = 'reserved' end
  states[s] = (states[s] or 0) + 1
end
for s, n in pairs(states) do
  out[#out + 1] = s
  out[#out + 1] = n
end
return out
