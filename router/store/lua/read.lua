-- Reads that go in the same round trip as the scripts around them (see LuaScripts).
-- ARGV: P, command (HGETALL | HMGET | HGET | ZCARD), key (without the site prefix), fields...
local command, key = ARGV[2], P .. ARGV[3]
if command == 'HGETALL' then return redis.call('HGETALL', key) end
if command == 'HGET' then return redis.call('HGET', key, ARGV[4]) end
if command == 'ZCARD' then return redis.call('ZCARD', key) end
if command == 'HMGET' then
  local fields = {}
  for i = 4, #ARGV do fields[#fields + 1] = ARGV[i] end
  local values = redis.call('HMGET', key, unpack(fields))
  -- nil would end a Lua array: absent fields come back as ''
  for i = 1, #fields do if not values[i] then values[i] = '' end end
  return values
end
return redis.error_reply('read: unknown command ' .. command)
