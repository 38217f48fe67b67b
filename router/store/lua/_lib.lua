-- Shared helpers, prepended to every script. ARGV[1] is the key prefix "acd:{site}:".
-- Every key a script touches carries the same {site} hash tag, so on Redis Cluster all
-- of a site's keys live in one slot and these scripts stay atomic.
local P = ARGV[1]

-- Seconds as text that parses back to the same double, so that Python and Prometheus
-- see exactly the value compared with the service-level threshold here.
-- Turning a double into 17 digits costs Redis a few µs (more than most commands), and so
-- does every Lua number passed to redis.call, which Redis formats the same way. So times and
-- sums go to redis.call as text from secs, each value formatted once per round trip, and a
-- time the caller passed in as text (time_arg) is given back as that very text: the
-- shortest text that parses back to it (docs/performance.md, "Numbers as text").
local SECS_TEXT = {}

local function secs(x)
  if x ~= x then return string.format('%.17g', x) end  -- NaN: no table key
  local text = SECS_TEXT[x]
  if text == nil then
    text = string.format('%.17g', x)
    SECS_TEXT[x] = text
  end
  return text
end

-- A time from the caller's arguments: its number, its text remembered for secs.
local function time_arg(text)
  local x = tonumber(text)
  if x ~= nil and x == x then SECS_TEXT[x] = text end
  return x
end

-- Whole numbers as text (levels, counts, positions in a list): string.format('%d') costs a
-- fraction of what Redis' own '%.17g' does, and small ones are kept once formatted.
local INT_TEXT = {}

local function int_text(n)
  local text = INT_TEXT[n]
  if text == nil then
    text = n == math.floor(n) and string.format('%d', n) or tostring(n)
    if n >= -1000 and n <= 100000 then INT_TEXT[n] = text end
  end
  return text
end

-- The per-day keys whose expiry this round trip has set: key -> the seconds it was given
-- from the event's time (expire_with_day).
local EXPIRING = {}

-- Called by run_batch before each round trip: the memory of one stays small.
local function forget_texts() SECS_TEXT, EXPIRING = {}, {} end

local function num(v, default)
  if v == false or v == nil then return default end
  return tonumber(v) or default
end

local function agent_key(id) return P .. 'agent:' .. id end
local function call_key(id) return P .. 'call:' .. id end
local function stats_key(queue) return P .. 'stats:' .. queue end

-- Queue statistics, all time and per day ----------------------------------------------------
-- Every count goes to the queue's all-time hash (stats:<queue>) and to the hash of the day
-- it happened on in the site's time zone (daystats:<YYYY-MM-DD>:<queue>), which the
-- wallboard and the API show as "today". Which day a time falls in is worked out in Python
-- (router/store/params.py, SiteDays: zoneinfo knows the daylight-saving rules) and passed
-- to the script as a window of three days with their exact bounds; a script calls
-- use_days(ARGV[n]) first. Per-day keys expire DAY_KEEP_S after their day ended, counted
-- from the event's time (an expiry time in Redis' clock would delete at once the keys of
-- events replayed from the past, or of a simulated clock behind the real one).
local DAY_KEEP_S = 3 * 86400
local DAYS = nil
-- The last window parsed, kept across operations and round trips (the library stays loaded):
-- every operation of a day passes the same text, and parsing it was a few µs each time.
local DAYS_TEXT, DAYS_PARSED = nil, nil

local function use_days(spec)
  DAYS = nil
  if spec == nil or spec == false or spec == '' then return end
  if spec ~= DAYS_TEXT then
    local parts, days = {}, {}
    for part in string.gmatch(spec, '%S+') do parts[#parts + 1] = part end
    for i = 1, #parts - 2, 3 do
      days[#days + 1] = {parts[i], tonumber(parts[i + 1]), tonumber(parts[i + 2])}
    end
    DAYS_TEXT, DAYS_PARSED = spec, days
  end
  DAYS = DAYS_PARSED
end

-- The day ``t`` falls in ({label, start, end}), clamped to the window; nil without one.
local function day_of(t)
  if DAYS == nil or #DAYS == 0 then return nil end
  local found = DAYS[1]
  for _, d in ipairs(DAYS) do
    if t >= d[2] then found = d end
  end
  return found
end

-- A per-day key (once written) expires DAY_KEEP_S after its day ends, as seen from ``at``;
-- set once per key and round trip (a batch's operations count into the same few keys), again
-- only when a later operation's event is older and so asks for more time.
local function expire_with_day(key, d, at)
  local left = math.floor(math.max(0, math.min(d[3] - at, 2 * 86400)) + DAY_KEEP_S)
  local set = EXPIRING[key]
  if set == nil or left > set then
    redis.call('EXPIRE', key, int_text(left))
    EXPIRING[key] = left
  end
end

-- Add to a queue's counter and to the same counter of the event's day (``incr``: HINCRBY
-- for counts, HINCRBYFLOAT for sums of seconds).
local function add_stat(incr, queue, field, n, at)
  n = incr == 'HINCRBYFLOAT' and secs(n) or int_text(n)
  redis.call(incr, stats_key(queue), field, n)
  local d = day_of(at)
  if d then
    local key = P .. 'daystats:' .. d[1] .. ':' .. queue
    redis.call(incr, key, field, n)
    expire_with_day(key, d, at)
  end
end

local function stat(queue, field, n, at) add_stat('HINCRBY', queue, field, n, at) end
local function statf(queue, field, x, at) add_stat('HINCRBYFLOAT', queue, field, x, at) end

-- Quality sampling (docs/quality.md) -------------------------------------------------------------
-- The draw: the first 52 bits of SHA-1(seed, call id) read as a number in [0, 1). It depends
-- on nothing but the call's id and the site's seed (not on the agent, the time or the order
-- calls arrive in), so a queue's share is met on average for every agent and hour alike, and
-- the same seed draws the same calls again.
local QA_DRAW_BITS = 4503599627370496  -- 2^52: 13 hex digits, exact in a double

local function qa_draw(seed, call_id)
  return tonumber(string.sub(redis.sha1hex(seed .. '\n' .. call_id), 1, 13), 16) / QA_DRAW_BITS
end

-- Is the call the agent has just answered sampled for review? 'random': its draw is below
-- the queue's share; 'minimum': the agent has fewer samples today (the site's day of the
-- answer) than the queue's minimum, so it is topped up. The agent's answers and samples of
-- the day are counted in qa:<day> (answered:<agent>, sampled:<agent>; sampled only in
-- queues that sample). A sampled call of a queue that records gets its recording's file
-- name; record_now '1' asks for the recording to start (not when an earlier visit of the
-- caller already started one: the caller's channel is being recorded already).
-- The policy is the call's 'qa' field ('share minimum record', set as it entered the queue).
-- Returns reason ('' not sampled), recording ('' none), record_now ('1'|'0').
local function qa_sample(ck, call_id, agent_id, at, seed, stem)
  local policy = redis.call('HGET', ck, 'qa')
  if not policy or policy == '' then return '', '', '0' end
  local share, minimum, record = string.match(policy, '^(%S+) (%S+) (%S+)$')
  share, minimum = tonumber(share) or 0, tonumber(minimum) or 0
  local d = day_of(at)
  local key = d and (P .. 'qa:' .. d[1]) or nil
  local reason = ''
  if share > 0 and qa_draw(seed, call_id) < share then
    reason = 'random'
  elseif key and minimum > 0 and num(redis.call('HGET', key, 'sampled:' .. agent_id), 0) < minimum then
    reason = 'minimum'
  end
  if key then
    redis.call('HINCRBY', key, 'answered:' .. agent_id, '1')
    if reason ~= '' then redis.call('HINCRBY', key, 'sampled:' .. agent_id, '1') end
    expire_with_day(key, d, at)
  end
  if reason == '' then return '', '', '0' end
  local recording, record_now = '', '0'
  if record == '1' then
    recording = redis.call('HGET', ck, 'rec_file')
    if not recording then
      local segment = num(redis.call('HGET', ck, 'segment'), 1)
      recording = stem .. (segment > 1 and ('-' .. segment) or '') .. '.wav'
      redis.call('HSET', ck, 'rec_file', recording)
      record_now = '1'
    end
  end
  redis.call('HSET', ck, 'qa_sampled', '1', 'qa_reason', reason, 'recording', recording)
  return reason, recording, record_now
end

-- Records (docs/records.md) ------------------------------------------------------------------
-- A transition appends its record to the site's outbox stream in the same atomic step; the
-- routing workers' relay (workers/relay.py) publishes it to Kafka, then acknowledges and
-- deletes it. Entries are flat string fields, always in the same order (Redis then stores
-- the field names once per node, not per entry) and exactly as the hash holds the numbers
-- (no JSON float rounding): 't' names the record, router/records.py reads the rest.
-- No MAXLEN: on Redis before 8.2 a length cap trims entries whether or not they were
-- published. Published entries are deleted at once instead (XACK and XDEL in one MULTI),
-- so the stream only ever holds what is not published yet.
local function outbox_add(kind, fields)
  redis.call('XADD', P .. 'outbox', '*', 't', kind, unpack(fields))
end

-- What an agent is doing, as its records name it: its presence first, then its calls.
local function effective_state(state, reason, reserved, connected)
  if not state or state == 'logged_out' then return 'logged_out', '' end
  if state == 'paused' then return 'paused', reason or '' end
  if state == 'wrap_up' then return 'wrap_up', '' end
  if num(connected, 0) > 0 then return 'on_call', '' end
  if num(reserved, 0) > 0 then return 'reserved', '' end
  return 'available', ''
end

-- The agent's record keeping (rec_state, rec_reason, rec_since in its hash): when its
-- effective state or pause reason changed, the state that ended goes to the outbox
-- (start = rec_since, end = at) and the new one starts at that same moment. Times never go
-- back: an event stamped by another process a little earlier ends the state at its start.
-- reindex calls this, and every script that changes an agent's state, reason, reserved or
-- connected count reindexes it afterwards (its availability depends on the same fields).
-- The new record fields are appended to ``writes`` (the agent's hash: reindex writes them).
local function note_agent_state(id, state, reason, reserved, connected, rec, at, writes)
  local s, r = effective_state(state, reason, reserved, connected)
  if s == rec[1] and r == (rec[2] or '') then return end
  local t = at
  if rec[1] then t = math.max(at, num(rec[3], at)) end
  local since = secs(t)
  if rec[1] then
    outbox_add('agent_state', {'agent_id', id, 'state', rec[1], 'reason', rec[2] or '',
      'start', rec[3] or since, 'end', since})
  end
  local n = #writes
  writes[n + 1], writes[n + 2], writes[n + 3], writes[n + 4] = 'rec_state', s, 'rec_reason', r
  writes[n + 5], writes[n + 6] = 'rec_since', since
end

-- Kafka delivers at least once. Each entity remembers, per topic partition, the offset
-- of the last event applied to it; a redelivered event at or below it is a no-op.
-- part is "topic:partition", or '' for work that does not come from Kafka (timers).
-- Positions are "session:seq": an event of an older session than the one last applied is
-- a stale redelivery too (a newer session means the producer restarted after it).
local function split_position(pos)
  local session, seq = string.match(pos or '', '^(%d+):(%-?%d+)$')
  return tonumber(session) or 0, tonumber(seq) or tonumber(pos) or -1
end

-- ``last``: the entity's watermark for ``part`` as already read ('wm:' .. part, nil or false
-- when none), for scripts that read it with the rest of the hash.
local function seen_since(last, part, off)
  if part == '' or not last then return false end
  local session, seq = split_position(off)
  local last_session, last_seq = split_position(last)
  if session ~= last_session then return session < last_session end
  return seq <= last_seq
end

local function seen(key, part, off)
  if part == '' then return false end
  return seen_since(redis.call('HGET', key, 'wm:' .. part), part, off)
end

local function mark(key, part, off)
  if part ~= '' then redis.call('HSET', key, 'wm:' .. part, off) end
end

-- Skill indexes: one key per skill and level, holding the agents at exactly that level,
-- under ``kind`` ('skill' for agents free now, 'in_skill' for agents logged in). An agent
-- is in one key per skill (few writes each time it becomes free or busy); a search for
-- "skill >= level" reads the keys of that level and every level above (term_keys).
local MAX_LEVEL = 5

-- An agent's keys, by its skills' JSON: agents keep their skills, and decoding them and
-- building the key names again at each change was a good part of a reindex. Kept across
-- round trips (the library stays loaded), for a bounded number of skill sets; callers only
-- read the lists.
local SKILL_KEYS, SKILL_KEYS_KEPT, SKILL_KEYS_MAX = {}, 0, 5000

local function skill_keys(skills_json, kind)
  local memo = P .. (kind or 'skill') .. '\n' .. (skills_json or '{}')
  local keys = SKILL_KEYS[memo]
  if keys then return keys end
  keys = {}
  local ok, skills = pcall(cjson.decode, skills_json or '{}')
  if not ok then return keys end
  for skill, level in pairs(skills) do
    local l = tonumber(level) or 0
    if l >= 1 then keys[#keys + 1] = P .. (kind or 'skill') .. ':' .. skill .. ':' .. int_text(l) end
  end
  if SKILL_KEYS_KEPT >= SKILL_KEYS_MAX then SKILL_KEYS, SKILL_KEYS_KEPT = {}, 0 end
  SKILL_KEYS[memo], SKILL_KEYS_KEPT = keys, SKILL_KEYS_KEPT + 1
  return keys
end

-- The keys holding agents that meet one requirement term: any alternative, any level at or
-- above the one asked for.
local function term_keys(term, kind)
  local keys = {}
  for _, alt in ipairs(term) do
    for l = math.max(1, tonumber(alt[2]) or 1), MAX_LEVEL do
      keys[#keys + 1] = P .. (kind or 'skill') .. ':' .. alt[1] .. ':' .. int_text(l)
    end
  end
  return keys
end

local function unindex_logged_in(id, skills_json)
  redis.call('SREM', P .. 'logged_in', id)
  for _, k in ipairs(skill_keys(skills_json, 'in_skill')) do redis.call('SREM', k, id) end
  redis.call('HDEL', agent_key(id), 'in_ix')
end

local function unindex_scores(id, skills_json)
  redis.call('ZREM', P .. 'available', id)
  for _, k in ipairs(skill_keys(skills_json)) do redis.call('ZREM', k, id) end
end

-- Remove an agent from every index (before its skills change, or when it cannot work).
local function unindex(id, skills_json)
  unindex_scores(id, skills_json)
  redis.call('HSET', agent_key(id), 'av_idx', '')
end

-- Logged-in agents by skill (sets): "is anybody qualified logged in?" for overflow.
-- Only touched when presence or skills change (in_ix remembers it is indexed).
local function index_logged_in(id, state, skills_json, indexed)
  local logged_in = state ~= nil and state ~= false and state ~= 'logged_out'
  if logged_in and indexed ~= '1' then
    redis.call('SADD', P .. 'logged_in', id)
    for _, k in ipairs(skill_keys(skills_json, 'in_skill')) do redis.call('SADD', k, id) end
    redis.call('HSET', agent_key(id), 'in_ix', '1')
  elseif not logged_in and indexed == '1' then
    unindex_logged_in(id, skills_json)
  end
end

-- An agent's score in the availability indexes: idle_since in whole milliseconds, as text.
-- Integer scores are cheap for Redis: a small sorted set keeps them as integers and compares
-- them without parsing text, and no score is formatted with 17 digits on the way in or out
-- (docs/performance.md, "Numbers as text"). Agents idle since the same millisecond go by id.
local function idle_score(idle_since)
  return string.format('%d', math.floor(num(idle_since, 0) * 1000 + 0.5))
end

-- The availability indexes hold exactly the agents that may be offered a call now:
-- state available and spare capacity, scored by idle_since (longest idle first).
-- Also keeps the occupancy input: seconds spent available with no call at all
-- (avail_s, from avail_mark). Returns those seconds accrued by this change.
-- ``changed_at`` (default ``now``): when the change happened, for the agent's state records.
local function reindex(id, now, changed_at)
  local ak = agent_key(id)
  local a = redis.call('HMGET', ak, 'state', 'capacity', 'reserved', 'connected', 'skills',
    'idle_since', 'avail_mark', 'dev_busy', 'in_ix', 'av_idx', 'reason', 'rec_state', 'rec_reason',
    'rec_since')
  -- What changes in the agent's own hash, written once at the end.
  local writes = {}
  if a[1] then note_agent_state(id, a[1], a[11], a[3], a[4], {a[12], a[13], a[14]}, changed_at or now, writes) end
  index_logged_in(id, a[1], a[5], a[9])
  local active = num(a[3], 0) + num(a[4], 0)
  -- dev_busy: the phone is unavailable, or busy with a call the ACD did not give it.
  -- av_idx remembers the score the agent is indexed with ('' = not indexed), so that the
  -- many reindexes that change nothing touch none of its skill keys.
  if a[1] == 'available' and active < num(a[2], 1) and a[8] ~= '1' then
    local score = idle_score(a[6])
    if a[10] ~= score then
      redis.call('ZADD', P .. 'available', score, id)
      for _, k in ipairs(skill_keys(a[5])) do redis.call('ZADD', k, score, id) end
      writes[#writes + 1], writes[#writes + 2] = 'av_idx', score
    end
  elseif a[10] ~= '' then
    unindex_scores(id, a[5])
    writes[#writes + 1], writes[#writes + 2] = 'av_idx', ''
  end
  -- avail_mark: when the agent's idle stretch began ('' or none: not idle now).
  local idle = a[1] == 'available' and active == 0
  local mark_at = num(a[7], nil)
  local accrued = 0
  if idle and mark_at == nil then
    writes[#writes + 1], writes[#writes + 2] = 'avail_mark', secs(now)
  elseif not idle and mark_at ~= nil then
    accrued = math.max(0, now - mark_at)
    redis.call('HINCRBYFLOAT', ak, 'avail_s', secs(accrued))
    writes[#writes + 1], writes[#writes + 2] = 'avail_mark', ''
  end
  if #writes > 0 then redis.call('HSET', ak, unpack(writes)) end
  return accrued
end

-- An offered call its agent answered: connected, with why this agent was chosen and the
-- requirements it was chosen for (the call's decision, else ``reqs_now``); the agent's
-- reservation becomes a connection. A plain answer and a callback's both go this way.
local function connect_call(ck, call_id, agent_id, decision_json, reqs_now, at)
  local ok, decision = pcall(cjson.decode, decision_json or '')
  if not ok or type(decision) ~= 'table' then decision = {} end
  local reqs = type(decision.requirements) == 'string' and decision.requirements or (reqs_now or '')
  local reason = type(decision.reason) == 'string' and decision.reason or ''
  redis.call('HSET', ck, 'state', 'connected', 'answered_at', secs(at), 'reqs_now', reqs, 'ans_reason', reason)
  redis.call('ZREM', P .. 'offers', call_id)
  redis.call('ZREM', P .. 'relax_due', call_id)
  local ak = agent_key(agent_id)
  redis.call('HINCRBY', ak, 'reserved', '-1')
  redis.call('HINCRBY', ak, 'connected', '1')
  reindex(agent_id, at)
end

-- Record the agent's phone state (DeviceStateChange, or app_queue's member Status). An
-- unavailable phone, or one busy with a call the ACD did not give it, takes the agent out
-- of the availability indexes (the caller reindexes); busy states while the agent holds
-- ACD calls are the ACD's own doing and change nothing. Returns (busy, previous busy).
local function set_device_state(id, device_state)
  local ak = agent_key(id)
  local state = string.upper(device_state)
  local a = redis.call('HMGET', ak, 'reserved', 'connected', 'dev_busy')
  local active = num(a[1], 0) + num(a[2], 0)
  local busy = '0'
  if state == 'UNAVAILABLE' or state == 'INVALID' then
    busy = '1'
  elseif active == 0 and (state == 'INUSE' or state == 'BUSY' or state == 'RINGING'
      or state == 'RINGINUSE' or state == 'ONHOLD') then
    busy = '1'
  end
  redis.call('HSET', ak, 'dev_state', state, 'dev_busy', busy)
  return busy, a[3] or '0'
end

-- Append an agent as a routing candidate: its id and the 7 fields the policy reads.
local function push_candidate(out, id)
  local a = redis.call('HMGET', agent_key(id), 'idle_since', 'skills', 'capacity', 'reserved',
    'connected', 'handled_s', 'avail_s')
  out[#out + 1] = id
  for f = 1, 7 do out[#out + 1] = a[f] or '' end
end

-- '1' when the agent may be offered a call right now (so the caller should look for one).
local function free_now(id)
  if id == nil or id == false or id == '' then return '0' end
  return redis.call('ZSCORE', P .. 'available', id) and '1' or '0'
end

-- A script's answer plus, when the agent may take a call now, '1' and its candidate
-- fields (so the caller can match it without reading it again); '0' otherwise.
local function with_candidate(out, id)
  if free_now(id) == '0' then
    out[#out + 1] = '0'
    return out
  end
  out[#out + 1] = '1'
  push_candidate(out, id)
  return out
end

-- Tell the routing workers an agent changed outside the event stream (operator API), so
-- the timer's next tick offers it a call instead of the next sweep. ``fields`` is a table.
local function nudge(fields)
  redis.call('RPUSH', P .. 'nudges', cjson.encode(fields))
end

local function waiting_score(priority, entered_at)
  return entered_at - priority * 1e10
end

-- The waiting line, kept three ways with the same scores: one sorted set across all queues
-- (line order), one per queue (an agent's search reads only the queues it could serve),
-- and one of calls carrying their own requirements (they may fit agents their queue would
-- not, so every agent's search reads it too).
local function line_add(call_id, queue, score, own_requirements)
  score = secs(score)
  redis.call('ZADD', P .. 'waiting', score, call_id)
  redis.call('ZADD', P .. 'waiting:' .. queue, score, call_id)
  if own_requirements then redis.call('ZADD', P .. 'waiting_own', score, call_id) end
end

local function line_remove(call_id, queue)
  redis.call('ZREM', P .. 'waiting', call_id)
  if queue then redis.call('ZREM', P .. 'waiting:' .. queue, call_id) end
  redis.call('ZREM', P .. 'waiting_own', call_id)
end

-- Put a call back in line at its original place (it keeps its wait and priority).
local function requeue(call_id)
  local ck = call_key(call_id)
  local c = redis.call('HMGET', ck, 'priority', 'entered_at', 'queue', 'reqs')
  redis.call('HSET', ck, 'state', 'waiting', 'agent', '', 'offer_id', '')
  line_add(call_id, c[3], waiting_score(num(c[1], 0), num(c[2], 0)), (c[4] or '') ~= '')
  redis.call('ZREM', P .. 'offers', call_id)
end

-- An agent gives back one reservation (offer withdrawn, declined or abandoned). Its
-- idle_since stays: an offer that came to nothing does not send it to the back of the line.
local function release_reservation(agent_id, now)
  if agent_id == nil or agent_id == '' or agent_id == false then return end
  local ak = agent_key(agent_id)
  if redis.call('EXISTS', ak) == 0 then return end
  if redis.call('HINCRBY', ak, 'reserved', '-1') < 0 then redis.call('HSET', ak, 'reserved', '0') end
  reindex(agent_id, now)
end

-- The call's record (docs/records.md) as the outbox carries it, from its hash (``c``, read
-- with FINISH_FIELDS) and the time it ended: flat name, value strings. Revision and wrapup_s
-- come first (positions 2 and 4), so that the wrap-up's end can fill them into a copy
-- (finish_wrapup_record). Waits are from entry into the queue it was in (as its queue's
-- statistics count them), talk from the answer to the end.
-- Returns the fields and whether the call was answered.
local function call_record(call_id, outcome, c, ended_text)
  -- A callback's wait counts from where its service level does (cb_sl_at, router/callback.py).
  local entered, answered, ended = num(c[21], num(c[7], 0)), num(c[9], nil), num(ended_text, 0)
  local wait = math.max(0, (answered or ended) - entered)
  local within = wait <= num(c[16], 0)
  return {
    'revision', '1', 'wrapup_s', '', 'call_id', call_id, 'segment', c[17] or '1', 'outcome', outcome,
    'queue', c[1] or '', 'first_queue', c[2] or c[1] or '', 'priority', c[3] or '0',
    'caller_number', c[4] or '', 'caller_name', c[5] or '', 'entered_at', c[6] or c[7] or '',
    'queue_entered_at', c[7] or '', 'first_offered_at', c[8] or '', 'answered_at', c[9] or '',
    'ended_at', ended_text, 'wait_s', secs(wait),
    'talk_s', secs(answered and math.max(0, ended - answered) or 0),
    'agent_id', answered and (c[11] or '') or '', 'offers', c[12] or '0', 'ring_no_answers', c[13] or '0',
    'requirements', c[14] or '', 'decision_reason', answered and (c[15] or '') or '',
    'sl_threshold_s', c[16] or '0',
    'answered_within_threshold', (answered and within) and '1' or '0',
    'abandoned_within_threshold', (outcome == 'abandoned' and within) and '1' or '0',
    'recording', c[18] or '', 'qa_sampled', c[19] == '1' and '1' or '0', 'qa_reason', c[20] or '',
  }, answered ~= nil
end

-- What finish_call reads: the record's fields (call_record's ``c``), then what says which
-- indexes may hold the call. (Written out: a library's top level runs without ipairs.)
local FINISH_FIELDS = {'queue', 'first_queue', 'priority', 'caller_num',
  'caller_name', 'first_entered_at', 'entered_at', 'first_offered_at', 'answered_at', 'ended_at',
  'agent', 'offers', 'rna', 'reqs_now', 'ans_reason', 'sl_t', 'segment', 'recording', 'qa_sampled', 'qa_reason',
  'cb_sl_at', 'state', 'cb_num', 'declines', 'rec_rev'}
local FINISH_STATE = 22

-- The call left the ACD (``state`` in its hash; ``outcome`` as its record names it): out of
-- every index, and its record to the outbox. ``wrap_agent``: the agent whose after-call
-- work for it has just begun ('' none); the record is published again with wrapup_s once
-- that ends. An answered call with no after-call work has wrapup_s 0 at once.
-- Indexes the call cannot be in are left alone: a connected call left the line and its offer
-- when it was answered (connect_call); only a callback (cb_num) is among the callbacks, and
-- only a call declined once ('declines', decline_offer) has a set of agents who declined it.
local function finish_call(call_id, state, at, outcome, wrap_agent)
  local ck = call_key(call_id)
  local c = redis.call('HMGET', ck, unpack(FINISH_FIELDS))
  local was, cb_num, declines = c[FINISH_STATE], c[FINISH_STATE + 1], c[FINISH_STATE + 2]
  local revision = int_text(num(c[FINISH_STATE + 3], 0) + 1)
  local ended = secs(at)
  if was ~= 'connected' then
    line_remove(call_id, c[1])
    redis.call('ZREM', P .. 'offers', call_id)
  end
  redis.call('HSET', ck, 'state', state, 'ended_at', ended, 'rec_rev', revision)
  redis.call('ZREM', P .. 'relax_due', call_id)
  redis.call('ZREM', P .. 'overflow_due', call_id)
  redis.call('SREM', P .. 'open_calls', call_id)
  if cb_num then
    redis.call('SREM', P .. 'callbacks', call_id)  -- callbacks: see the end of this file
    redis.call('ZREM', P .. 'callback_due', call_id)
  end
  redis.call('EXPIRE', ck, '86400')
  if declines then redis.call('EXPIRE', P .. 'declined:' .. call_id, '86400') end
  local record, answered = call_record(call_id, outcome, c, ended)
  record[2] = revision
  if answered and (wrap_agent or '') == '' then record[4] = '0' end
  outbox_add('call', record)
  if answered and (wrap_agent or '') ~= '' then
    redis.call('HSET', agent_key(wrap_agent), 'wrapup_rec', cjson.encode(record))
  end
end

-- The agent's after-call work ended after ``seconds``: its call's record once more, with
-- wrapup_s and the next revision (the call's hash may be gone or moved on: the copy kept
-- at the call's end is what is published).
local function finish_wrapup_record(agent_id, seconds)
  local ak = agent_key(agent_id)
  local kept = redis.call('HGET', ak, 'wrapup_rec')
  if not kept then return end
  redis.call('HDEL', ak, 'wrapup_rec')
  local record = cjson.decode(kept)
  local ck = call_key(record[6])
  local revision = tonumber(record[2]) + 1
  if redis.call('EXISTS', ck) == 1 then revision = redis.call('HINCRBY', ck, 'rec_rev', '1') end
  record[2], record[4] = tostring(revision), secs(seconds)
  outbox_add('call', record)
end

-- Count an abandoned call for the queue's statistics. Abandons within the service-level
-- threshold are "short abandons", which the default service-level formula leaves out.
local function record_abandon(queue, waited, threshold, at)
  stat(queue, 'abandoned', 1, at)
  statf(queue, 'abandon_wait_sum', waited, at)
  if waited > threshold then stat(queue, 'abandoned_after', 1, at) end
end

-- The offered agent did not take the call: back to its place at the head of the line,
-- never offered to this agent again; the agent leaves available if auto_pause ('1').
-- Returns '1' when the agent was paused.
local function decline_offer(call_id, agent_id, queue, at, auto_pause, reason)
  redis.call('SADD', P .. 'declined:' .. call_id, agent_id)
  redis.call('HSET', call_key(call_id), 'declines', '1')  -- push_waiting_call reads the set then
  redis.call('HINCRBY', call_key(call_id), 'rna', 1)
  stat(queue, 'declined', 1, at)
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

-- The free places left to hand out, in this round trip, of each agent handed out as the
-- one candidate of a call (a search with limit 1: longest idle, whose caller offers the
-- call to that agent). A burst of calls applied together searches in one round trip,
-- before any of them reserves: without this every call of a queue would be handed the
-- same agent, all but one reservation would fail, and each retry would hand them all one
-- agent again. run_batch empties it.
local HANDED = {}

-- Available agents meeting every requirement term, longest idle first: a flat list of 8
-- fields per agent (id, idle_since, skills, capacity, reserved, connected, handled_s,
-- avail_s). terms: {{{skill, level}, ...alternatives}, ...}; {} = any available agent.
local function find_candidates(terms, limit, exclude, max_scan)
  -- Drive the scan from the smallest term so that no decision walks every agent.
  -- (One term drives itself: no need to size it.)
  local driver, driver_size = nil, math.huge
  if #terms == 1 then driver = 1 end
  for i, term in ipairs(terms) do
    if #terms == 1 then break end
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

  -- Pages start small (most decisions need the first few) and grow. They are read without
  -- scores: a key lists its agents longest idle first already (by score, ties by id, the
  -- order of the sort below), and Redis formats every score it returns as text, which cost
  -- more than the rest of the read (docs/performance.md). Only when agents were found in
  -- more than one key are their scores read, to merge the keys' orders.
  local found, picked, keys_found = {}, {}, 0
  for _, key in ipairs(driver_keys) do
    local scanned, start, size = 0, 0, math.max(4, limit * 2)
    local wanted, before = #found + limit, #found
    while #found < wanted and scanned < max_scan do
      local page = redis.call('ZRANGE', key, int_text(start), int_text(start + size - 1))
      if #page == 0 then break end
      for _, id in ipairs(page) do
        scanned = scanned + 1
        if not exclude[id] and not picked[id] and (HANDED[id] or 1) > 0 and meets_others(id) then
          picked[id] = true
          found[#found + 1] = {id, key}
          if #found >= wanted then break end
        end
      end
      start = start + size
      size = size * 4
    end
    if #found > before then keys_found = keys_found + 1 end
  end
  if keys_found > 1 then
    for _, f in ipairs(found) do f[3] = tonumber(redis.call('ZSCORE', f[2], f[1])) end
    table.sort(found, function(x, y)
      if x[3] == y[3] then return x[1] < y[1] end
      return x[3] < y[3]
    end)
  end
  local out = {}
  for i = 1, math.min(limit, #found) do push_candidate(out, found[i][1]) end
  if limit == 1 and found[1] then
    local id = found[1][1]  -- out: id, idle_since, skills, capacity, reserved, connected, ...
    HANDED[id] = (HANDED[id] or (num(out[4], 1) - num(out[5], 0) - num(out[6], 0))) - 1
  end
  return out
end

-- Calls waiting per queue and the oldest one's entry time, appended to ``out`` as
-- queue, count, oldest_entered_at triples. A call waits until it is answered (offered
-- and ringing included: the caller still waits).
local function push_waiting_by_queue(out)
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
  for q, n in pairs(waiting) do
    out[#out + 1] = q
    out[#out + 1] = n
    out[#out + 1] = tostring(oldest[q])
  end
end

-- A waiting call as the policy reads it (8 fields: id, queue, priority, entered_at,
-- reqs, channel, declined_json, affinity ('kind agent until released', '' none: see
-- router/affinity.py)), appended to ``out``; nothing if it no longer waits.
local WAITING_WIDTH = 8
local function push_waiting_call(out, id)
  local c = redis.call('HMGET', call_key(id), 'state', 'queue', 'priority', 'entered_at', 'reqs', 'channel',
    'declines', 'aff')
  if c[1] ~= 'waiting' then return end
  for _, v in ipairs({id, c[2], c[3], c[4], c[5] or '', c[6] or ''}) do out[#out + 1] = v end
  -- Most calls were never declined: no set to read.
  out[#out + 1] = c[7] and cjson.encode(redis.call('SMEMBERS', P .. 'declined:' .. id)) or '[]'
  out[#out + 1] = c[8] or ''
end

-- Affinity (router/affinity.py): a call waiting for one agent first is listed under that
-- agent (held:<agent>, by when the wait ends), so that its logout can release the call.
local function hold_for(call_id, aff)
  local kind, agent, untl, released = string.match(aff, '^(%S+) (%S+) (%S+) (%S+)$')
  if not kind or released == '1' then return end
  local key = P .. 'held:' .. agent
  redis.call('ZADD', key, untl, call_id)
  redis.call('EXPIRE', key, 86400)
end

-- End an agent's after-call work at ``ended`` (the timer's scheduled end, or now when an
-- operator ends it): the agent becomes available, and its call's record gets wrapup_s.
-- Returns the seconds and the queue, or nil when the agent is not in wrap-up.
local function end_wrapup(id, ended, now)
  local ak = agent_key(id)
  local a = redis.call('HMGET', ak, 'state', 'wrapup_start', 'wrapup_queue')
  redis.call('ZREM', P .. 'wrapup', id)
  if a[1] ~= 'wrap_up' then return nil end
  local seconds = math.max(0, ended - num(a[2], ended))
  redis.call('HINCRBYFLOAT', ak, 'handled_s', seconds)
  if a[3] and a[3] ~= '' then
    statf(a[3], 'wrapup_sum', seconds, ended)
    stat(a[3], 'wrapups', 1, ended)
  end
  redis.call('HSET', ak, 'state', 'available', 'idle_since', ended, 'state_since', ended,
    'wrapup_until', ended)
  finish_wrapup_record(id, seconds)
  reindex(id, now, ended)
  return seconds, a[3] or ''
end

-- The agent's part of a call is over (it hung up or handed the caller on): one call less,
-- its talk counts as handling, and it enters the call's wrap-up (or is idle from now).
-- Returns the agent's id when its after-call work began, else '' (for finish_call).
local function agent_call_done(agent_id, queue, talk, wrapup, at)
  local ak = agent_key(agent_id)
  local a = redis.call('HMGET', ak, 'state', 'connected')
  if not a[1] and redis.call('EXISTS', ak) == 0 then return '' end
  redis.call('HINCRBYFLOAT', ak, 'handled_s', secs(talk))
  local connected = int_text(math.max(0, num(a[2], 0) - 1))
  local wrapping = ''
  if a[1] == 'available' and wrapup > 0 then
    local until_text = secs(at + wrapup)
    redis.call('HSET', ak, 'connected', connected, 'state', 'wrap_up', 'state_since', secs(at),
      'wrapup_start', secs(at), 'wrapup_until', until_text, 'wrapup_queue', queue)
    redis.call('ZADD', P .. 'wrapup', until_text, agent_id)
    wrapping = agent_id
  elseif a[1] == 'available' then
    redis.call('HSET', ak, 'connected', connected, 'idle_since', secs(at))
  else
    redis.call('HSET', ak, 'connected', connected)
  end
  reindex(agent_id, at)
  return wrapping
end

-- Transfers ------------------------------------------------------------------------------

-- A transferred call leaves its agent at ``at`` (the agent's leg ended): talk stops there,
-- the agent goes to wrap-up, and the call leaves the ACD as 'transferred' unless the caller
-- comes back to a queue (call_enqueue). The talk counts as a completed call's, so AHT and
-- staffing keep their meaning. Returns the talk seconds, the queue and the agent.
local function end_transferred_call(call_id, at)
  local ck = call_key(call_id)
  local c = redis.call('HMGET', ck, 'queue', 'agent', 'answered_at', 'wrapup_s')
  local queue, agent_id = c[1] or '', c[2] or ''
  local talk = math.max(0, at - num(c[3], at))
  local wrapping = agent_call_done(agent_id, queue, talk, num(c[4], 0), at)
  finish_call(call_id, 'transferred', at, 'transferred', wrapping)
  redis.call('HSET', ck, 'outcome', 'transferred', 'talk_s', secs(talk))
  stat(queue, 'completed', 1, at)
  statf(queue, 'talk_sum', talk, at)
  return talk, queue, agent_id
end

-- A known call announced again by [acd-inbound] comes back to the ACD when its agent had
-- transferred it there (live announcements only: ``allowed`` is '1').
local function back_from_transfer(ck, state, allowed)
  if allowed ~= '1' then return false end
  return state == 'transferred' or (state == 'connected' and redis.call('HEXISTS', ck, 'xfer_at') == 1)
end

-- Clear what the call's last connection left before it waits again; an agent whose leg's
-- end has not been seen yet is released now. Returns that agent's id, or ''.
local function forget_transfer(call_id, ck, state, at)
  local released = ''
  if state == 'connected' then
    local leg_end = num(redis.call('HGET', ck, 'leg_ended_at'), at)
    local _, _, agent_id = end_transferred_call(call_id, leg_end)
    released = agent_id
  end
  -- The record's per-visit figures too: the caller's next visit counts its own offers.
  redis.call('HDEL', ck, 'xfer_at', 'xfer_kind', 'xfer_to', 'leg_ended_at', 'outcome', 'ended_at',
    'answered_at', 'talk_s', 'declines', 'first_offered_at', 'offers', 'rna', 'ans_reason',
    'qa_sampled', 'qa_reason', 'recording')
  redis.call('PERSIST', ck)
  redis.call('DEL', P .. 'declined:' .. call_id)
  return released
end

-- Callbacks (router/callback.py, docs/routing.md) ---------------------------------------------
-- A caller who asked to be called back keeps its call in line (cb_num set: the number to
-- call); 'callbacks' holds those calls while open. An attempt that came to nothing releases
-- the agent; the call then waits out of line (callback_wait, entry time unchanged, so it
-- comes back to the same place) until cb_retry_s has passed (callback_due), and after the
-- last of cb_max attempts it ends callback_failed. Returns 'retry' or 'callback_failed'.
local function callback_attempt_failed(call_id, at)
  local ck = call_key(call_id)
  local c = redis.call('HMGET', ck, 'agent', 'queue', 'cb_max', 'cb_retry_s')
  local attempts = redis.call('HINCRBY', ck, 'cb_attempts', 1)
  stat(c[2], 'cb_unanswered', 1, at)
  redis.call('HSET', ck, 'agent', '', 'offer_id', '', 'cb_first', '', 'cb_offer', '')
  redis.call('ZREM', P .. 'offers', call_id)
  release_reservation(c[1], at)
  if attempts >= num(c[3], 1) then
    finish_call(call_id, 'callback_failed', at, 'callback_failed')
    stat(c[2], 'cb_failed', 1, at)
    return 'callback_failed'
  end
  redis.call('HSET', ck, 'state', 'callback_wait')
  redis.call('ZADD', P .. 'callback_due', at + num(c[4], 0), call_id)
  return 'retry'
end
