-- Shared helpers, prepended to every script. ARGV[1] is the key prefix "acd:{site}:".
-- Every key a script touches carries the same {site} hash tag, so on Redis Cluster all
-- of a site's keys live in one slot and these scripts stay atomic.
local P = ARGV[1]

local function num(v, default)
  if v == false or v == nil then return default end
  return tonumber(v) or default
end

local function agent_key(id) return P .. 'agent:' .. id end
local function call_key(id) return P .. 'call:' .. id end
local function stats_key(queue) return P .. 'stats:' .. queue end

-- Kafka delivers at least once. Each entity remembers, per topic partition, the offset
-- of the last event applied to it; a redelivered event at or below it is a no-op.
-- part is "topic:partition", or '' for work that does not come from Kafka (timers).
local function seen(key, part, off)
  if part == '' then return false end
  return tonumber(off) <= num(redis.call('HGET', key, 'wm:' .. part), -1)
end

local function mark(key, part, off)
  if part ~= '' then redis.call('HSET', key, 'wm:' .. part, off) end
end

local function skill_keys(skills_json)
  local keys = {}
  local ok, skills = pcall(cjson.decode, skills_json or '{}')
  if not ok then return keys end
  for skill, level in pairs(skills) do
    for l = 1, tonumber(level) or 0 do keys[#keys + 1] = P .. 'avail:' .. skill .. ':' .. l end
  end
  return keys
end

local function unindex(id, skills_json)
  redis.call('ZREM', P .. 'available', id)
  for _, k in ipairs(skill_keys(skills_json)) do redis.call('ZREM', k, id) end
end

-- The availability indexes hold exactly the agents that may be offered a call now:
-- state available and spare capacity, scored by idle_since (longest idle first).
-- Also keeps the occupancy input: seconds spent available with no call at all
-- (avail_s, from avail_mark). Returns those seconds accrued by this change.
local function reindex(id, now)
  local ak = agent_key(id)
  local a = redis.call('HMGET', ak, 'state', 'capacity', 'reserved', 'connected', 'skills',
    'idle_since', 'avail_mark')
  local active = num(a[3], 0) + num(a[4], 0)
  if a[1] == 'available' and active < num(a[2], 1) then
    local score = num(a[6], 0)
    redis.call('ZADD', P .. 'available', score, id)
    for _, k in ipairs(skill_keys(a[5])) do redis.call('ZADD', k, score, id) end
  else
    unindex(id, a[5])
  end
  local idle = a[1] == 'available' and active == 0
  local mark_at = num(a[7], nil)
  if idle and mark_at == nil then
    redis.call('HSET', ak, 'avail_mark', now)
  elseif not idle and mark_at ~= nil then
    local accrued = math.max(0, now - mark_at)
    redis.call('HINCRBYFLOAT', ak, 'avail_s', accrued)
    redis.call('HDEL', ak, 'avail_mark')
    return accrued
  end
  return 0
end

local function waiting_score(priority, entered_at)
  return entered_at - priority * 1e10
end

-- Put a call back in line at its original place (it keeps its wait and priority).
local function requeue(call_id)
  local ck = call_key(call_id)
  local c = redis.call('HMGET', ck, 'priority', 'entered_at')
  redis.call('HSET', ck, 'state', 'waiting', 'agent', '', 'offer_id', '')
  redis.call('ZADD', P .. 'waiting', waiting_score(num(c[1], 0), num(c[2], 0)), call_id)
  redis.call('ZREM', P .. 'offers', call_id)
end

-- An agent gives back one reservation (offer withdrawn, declined or abandoned). Its
-- idle_since stays: an offer that came to nothing does not send it to the back of the line.
local function release_reservation(agent_id, now)
  if agent_id == nil or agent_id == '' or agent_id == false then return end
  local ak = agent_key(agent_id)
  if redis.call('EXISTS', ak) == 0 then return end
  if redis.call('HINCRBY', ak, 'reserved', -1) < 0 then redis.call('HSET', ak, 'reserved', 0) end
  reindex(agent_id, now)
end

local function finish_call(call_id, state, at)
  local ck = call_key(call_id)
  redis.call('HSET', ck, 'state', state, 'ended_at', at)
  redis.call('ZREM', P .. 'waiting', call_id)
  redis.call('ZREM', P .. 'offers', call_id)
  redis.call('ZREM', P .. 'relax_due', call_id)
  redis.call('SREM', P .. 'open_calls', call_id)
  redis.call('EXPIRE', ck, 86400)
  redis.call('EXPIRE', P .. 'declined:' .. call_id, 86400)
end

-- Count an abandoned call for the queue's statistics. Abandons within the service-level
-- threshold are "short abandons", which the default service-level formula leaves out.
local function record_abandon(queue, waited, threshold)
  local sk = stats_key(queue)
  redis.call('HINCRBY', sk, 'abandoned', 1)
  redis.call('HINCRBYFLOAT', sk, 'abandon_wait_sum', waited)
  if waited > threshold then redis.call('HINCRBY', sk, 'abandoned_after', 1) end
end

-- The offered agent did not take the call: back to its place at the head of the line,
-- never offered to this agent again; the agent leaves available if auto_pause ('1').
-- Returns '1' when the agent was paused.
local function decline_offer(call_id, agent_id, queue, at, auto_pause, reason)
  redis.call('SADD', P .. 'declined:' .. call_id, agent_id)
  redis.call('HINCRBY', stats_key(queue), 'declined', 1)
  requeue(call_id)
  local ak = agent_key(agent_id)
  local paused = '0'
  if auto_pause == '1' and redis.call('HGET', ak, 'state') == 'available' then
    redis.call('HSET', ak, 'state', 'paused', 'reason', reason, 'state_since', at)
    paused = '1'
  end
  release_reservation(agent_id, at)
  return paused
end
