-- A waiting call stops waiting for its affinity agent (router/affinity.py) before its time:
-- the agent logged out or no longer qualifies. Idempotent.
-- ARGV: P, call_id, agent_id
-- Returns {'released', aff} (the call's affinity as now stored) or {'ignored', ''}
local call_id, agent_id = ARGV[2], ARGV[3]
redis.call('ZREM', P .. 'held:' .. agent_id, call_id)
local ck = call_key(call_id)
local aff = redis.call('HGET', ck, 'aff')
if not aff then return {'ignored', ''} end
local kind, agent, untl, released = string.match(aff, '^(%S+) (%S+) (%S+) (%S+)$')
if agent ~= agent_id or released == '1' then return {'ignored', aff} end
aff = kind .. ' ' .. agent .. ' ' .. untl .. ' 1'
redis.call('HSET', ck, 'aff', aff)
return {'released', aff}
