-- Site-wide state for the gauges, in one round trip. ARGV: P
-- Returns {queue1, waiting1, oldest_entered_at1, ..., '|', state1, count1, ...}
-- A call counts as waiting until it is answered (offered and ringing included: the
-- caller still waits). Agents count by what they are doing: on a call or reserved
-- first, then their presence state.
local out = {}
push_waiting_by_queue(out)
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
