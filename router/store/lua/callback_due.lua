-- Callbacks whose wait between attempts is over go back to their place in line (their
-- entry time never changed). ARGV: P, now, limit. Returns the calls back in line.
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'callback_due', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))) do
  redis.call('ZREM', P .. 'callback_due', id)
  if redis.call('HGET', call_key(id), 'state') == 'callback_wait' then
    requeue(id)
    out[#out + 1] = id
  end
end
return out
