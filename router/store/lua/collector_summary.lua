-- Everything the state collector exports, in one round trip and one pass (read-only).
-- ARGV: P
-- Returns {queue1, waiting1, oldest_entered_at1, ..., '|', state1, skills_json1, count1, ...}
-- Calls count as in state_summary.lua: waiting until answered. Agents come grouped by
-- (state, skills) so that the collector checks each distinct skill set against each
-- queue's requirements once: a site of 10,000 agents has a few hundred skill profiles.
-- An agent's state is what it is doing: on a call or reserved first, then its presence.
local out = {}
push_waiting_by_queue(out)
out[#out + 1] = '|'
local groups, order = {}, {}
for _, id in ipairs(redis.call('SMEMBERS', P .. 'agents')) do
  local a = redis.call('HMGET', agent_key(id), 'state', 'reserved', 'connected', 'skills')
  local s = a[1] or 'logged_out'
  if num(a[3], 0) > 0 then s = 'on_call' elseif num(a[2], 0) > 0 then s = 'reserved' end
  local skills = a[4] or '{}'
  local key = s .. '\n' .. skills
  if groups[key] == nil then
    groups[key] = 0
    order[#order + 1] = {key, s, skills}
  end
  groups[key] = groups[key] + 1
end
for _, g in ipairs(order) do
  out[#out + 1] = g[2]
  out[#out + 1] = g[3]
  out[#out + 1] = groups[g[1]]
end
return out
