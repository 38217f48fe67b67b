-- The dispatcher takes a recording command before sending its MixMonitor, once: Kafka
-- delivers at least once, and a second MixMonitor would write the same file a second time
-- (or over the first). A call that is no longer connected has nothing left to record.
-- ARGV: P, call_id, file
-- Returns {'ok', 'connected'} or {'stale', why}: the call's state, 'unknown', 'other_file'
-- (the call records to another file now) or 'sent' (claimed before).
local ck = call_key(ARGV[2])
local c = redis.call('HMGET', ck, 'state', 'rec_file', 'rec_sent')
if not c[1] then return {'stale', 'unknown'} end
if c[2] ~= ARGV[3] then return {'stale', 'other_file'} end
if c[3] then return {'stale', 'sent'} end
if c[1] ~= 'connected' then return {'stale', c[1]} end
redis.call('HSET', ck, 'rec_sent', '1')
return {'ok', 'connected'}
