-- Login, logout, pause, unpause (from the roster queue's QueueMember* events), and the
-- member's phone state when the event lists it (Status), so that a phone app_queue lists
-- as unavailable is never offered a call, from the first listing on.
-- ARGV: P, agent_id, new_state (available|paused|logged_out), reason, at, part, off,
--       device_state ('' = not given), pause_known ('0' for QueueMemberStatus: its Paused
--       can predate the router's own ring-no-answer pause, so it only logs a missed member in)
-- Returns {outcome, previous_state, available_seconds_accrued}; outcome 'device_changed'
-- when only the phone's usability changed.
local id, new, reason, at = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local ak = agent_key(id)
if redis.call('EXISTS', ak) == 0 then return {'unknown_agent', '', '0'} end
if seen(ak, ARGV[6], ARGV[7]) then return {'duplicate', '', '0'} end
mark(ak, ARGV[6], ARGV[7])
local device_changed = false
if ARGV[8] and ARGV[8] ~= '' then
  local busy, was_busy = set_device_state(id, ARGV[8])
  device_changed = busy ~= was_busy
end
local a = redis.call('HMGET', ak, 'state', 'reason', 'wrapup_start')
local cur = a[1]
if ARGV[9] == '0' and cur ~= 'logged_out' and new ~= 'logged_out' then new, reason = cur, a[2] end
-- The roster only knows paused or not; after-call work is the router's own state.
local same = cur == new and (new ~= 'paused' or a[2] == reason)
if same or (cur == 'wrap_up' and new == 'available') then
  if device_changed then return {'device_changed', cur, tostring(reindex(id, at))} end
  return {'unchanged', cur, '0'}
end
if cur == 'wrap_up' then
  -- A pause or logout cuts the after-call work short: that is where it ended.
  redis.call('ZREM', P .. 'wrapup', id)
  finish_wrapup_record(id, math.max(0, at - num(a[3], at)))
  redis.call('HINCRBYFLOAT', ak, 'handled_s', math.max(0, at - num(a[3], at)))
end
if cur == 'logged_out' then
  redis.call('HSET', ak, 'handled_s', 0, 'avail_s', 0, 'login_at', at)
end
if new == 'available' and cur ~= 'available' then redis.call('HSET', ak, 'idle_since', at) end
redis.call('HSET', ak, 'state', new, 'reason', reason, 'state_since', at)
return {'changed', cur, tostring(reindex(id, at))}
