local n = (#KEYS - 2) / 8
local modified = KEYS[#KEYS - 1]
local incarnation = redis.call('GET', KEYS[#KEYS])
if not incarnation then
  local t = redis.call('TIME')
  incarnation = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('SET', KEYS[#KEYS], incarnation)
end
local fresh = tonumber(ARGV[6])
local since = 0
if fresh > 0 then
  local now = redis.call('TIME')
  since = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - fresh
end
local out = {}
for i = 1, n do
  local k = (i - 1) * 8
  local held = redis.call('GET', KEYS[k + 8])
  local persisted = redis.call('GET', KEYS[k + 6])
  if held and held ~= ARGV[1] then
    out[i] = {'busy'}
  elseif fresh > 0 and not held and persisted and split(persisted) > since then
    out[i] = {'fresh', persisted}
  else
    redis.call('SET', KEYS[k + 8], ARGV[1], 'PX', ARGV[2])
    for j = 1, 7 do redis.call('EXPIRE', KEYS[k + j], ARGV[3]) end
    local pos = redis.call('GET', KEYS[k + 4]) or '0-0'
    persisted = persisted or '0-0'
    local len = redis.call('XLEN', KEYS[k + 5])
    local exists = redis.call('EXISTS', KEYS[k + 1])
    local json = exists == 1 and redis.call('GETRANGE', KEYS[k + 1], 0, 4) ~= '\0yjs\0'
    local temp, from, compact, size, waiting = 0, pos, 0, 0, 0
    if json then
      temp = 1
    else
      size = redis.call('STRLEN', KEYS[k + 1])
      waiting = tonumber(redis.call('GET', KEYS[k + 7]) or '0')
      from = persisted
      if waiting >= math.max(tonumber(ARGV[4]), size) or len >= tonumber(ARGV[5]) then
        compact = 1
        if lt(pos, from) then from = pos end
        if size > 0 then temp = 1 end
      end
    end
    out[i] = {
      temp,
      pos,
      persisted,
      from,
      redis.call('SISMEMBER', modified, ARGV[6 + i]),
      compact,
      len,
      exists,
      waiting,
      size,
    }
  end
end
out[n + 1] = incarnation
return out
