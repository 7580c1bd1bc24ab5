local ttl = ARGV[4]
if ARGV[6] == 'json' then
  local held = redis.call('GET', KEYS[3])
  local later = ARGV[3] ~= '' and (not held or held < ARGV[3])
  if redis.call('GET', KEYS[2]) == ARGV[2] and not (ARGV[10] == '1' and later) then
    return {2, ''}
  end
  if held and not later then return {0, ''} end
end
local id = redis.call('XADD', KEYS[5], '*', 'r', ARGV[7], 'k', ARGV[6], 'h', ARGV[2], 's', ARGV[3], 'd', ARGV[1])
if ARGV[6] == 'json' then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ttl)
  if ARGV[3] == '' then redis.call('DEL', KEYS[3])
  else redis.call('SET', KEYS[3], ARGV[3], 'EX', ttl) end
  redis.call('SET', KEYS[4], id, 'EX', ttl)
else
  if redis.call('INCRBY', KEYS[7], #ARGV[1]) == #ARGV[1] then redis.call('EXPIRE', KEYS[7], ttl) end
end
local left = redis.call('PTTL', KEYS[5])
if left < ttl * 900 then
  for i = 1, 7 do redis.call('EXPIRE', KEYS[i], ttl) end
end
redis.call('SADD', KEYS[8], ARGV[5])
if ARGV[11] == '1' then redis.call('HINCRBY', KEYS[10], ARGV[6] .. '\n' .. ARGV[7] .. '\n' .. ARGV[5], 1) end
local prev = redis.call('SET', KEYS[9], id, 'EX', ttl, 'GET') or ''
local who = #ARGV[7] .. ':' .. ARGV[7]
if #ARGV[1] <= tonumber(ARGV[9]) then
  redis.call('PUBLISH', ARGV[8], 'E' .. who .. prev .. ' ' .. id .. ' ' .. ARGV[6] .. ' ' .. ARGV[2]
    .. ' ' .. #ARGV[3] .. ':' .. ARGV[3] .. ARGV[1])
else
  redis.call('PUBLISH', ARGV[8], 'L' .. who .. id)
end
return {1, id}
