-- After an AMI reconnect, ingest lists every live channel. Open calls that entered before
-- the snapshot and are not in it ended during the gap: close them instead of leaving them
-- waiting forever. ARGV: P, snapshot_at, live_ids_json, ended_at, pbx_cut, days
-- ended_at: the last moment the calls were known to exist (ingest lost the link or saw
-- Event: Shutdown); '' when unknown, then the snapshot time. pbx_cut '1': Asterisk's
-- restart ended them, so a waiting call ends pbx_restart, not abandoned.
-- Returns 4 fields per closed call: id, queue, outcome (completed|abandoned|pbx_restart),
-- seconds (talked or waited), so that the worker's metrics count them like any other call.
-- Their records say closed_by_resync (nobody saw how they ended), or pbx_restart.
local at = tonumber(ARGV[2])
local ended_at = tonumber(ARGV[4]) or at
local cut = ARGV[5] == '1'
use_days(ARGV[6])
local live = {}
for _, id in ipairs(cjson.decode(ARGV[3])) do live[id] = true end
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', P .. 'open_calls')) do
  local c = redis.call('HMGET', call_key(id), 'state', 'queue', 'entered_at', 'agent', 'sl_t')
  -- Callbacks (router/callback.py): the caller hung up on purpose; while an attempt is
  -- connected, the call lives on as the attempt's channel (Linkedid acdcb-<offer>-<call>).
  local cb = redis.call('HMGET', call_key(id), 'cb_num', 'offer_id')
  local callback_alive = cb[1] and (c[1] ~= 'connected' or live['acdcb-' .. (cb[2] or '') .. '-' .. id])
  if not live[id] and not callback_alive and num(c[3], at) < at then
    -- Never before the call's own start: it was seen alive until then.
    local ended = math.min(at, math.max(ended_at, num(c[3], at)))
    if c[1] == 'connected' then
      ended = math.max(ended, num(redis.call('HGET', call_key(id), 'answered_at'), ended))
      finish_call(id, 'completed', ended, 'closed_by_resync')
      local ak = agent_key(c[4] or '')
      if redis.call('EXISTS', ak) == 1 then
        if redis.call('HINCRBY', ak, 'connected', -1) < 0 then redis.call('HSET', ak, 'connected', 0) end
        redis.call('HSET', ak, 'idle_since', at)
        reindex(c[4], at)
      end
      stat(c[2], 'completed', 1, ended)
      local talked = math.max(0, ended - num(redis.call('HGET', call_key(id), 'answered_at'), ended))
      statf(c[2], 'talk_sum', talked, ended)
      for _, v in ipairs({id, c[2], 'completed', secs(talked)}) do out[#out + 1] = v end
    elseif c[1] then
      local waited = math.max(0, ended - num(c[3], ended))
      release_reservation(c[4], at)
      if cut then
        finish_call(id, 'pbx_restart', ended, 'pbx_restart')
        stat(c[2], 'ended_by_pbx_restart', 1, ended)
        for _, v in ipairs({id, c[2], 'pbx_restart', secs(waited)}) do out[#out + 1] = v end
      else
        finish_call(id, 'abandoned', ended, 'closed_by_resync')
        record_abandon(c[2], waited, num(c[5], 0), ended)
        for _, v in ipairs({id, c[2], 'abandoned', secs(waited)}) do out[#out + 1] = v end
      end
    else
      redis.call('SREM', P .. 'open_calls', id)
    end
  end
end
return out
