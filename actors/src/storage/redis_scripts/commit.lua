local n = (#KEYS - 2) / 8
local modified = KEYS[#KEYS - 1]
local incarnation = redis.call('GET', KEYS[#KEYS])
local ttl = ARGV[2]
local now = redis.call('TIME')
local stale = {}
local keep = string.format('%d-0', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[3]))
for i = 1, n do
  local k = (i - 1) * 8
  local a = 3 + (i - 1) * 8
  local id, inc, position, recorded = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local compacted = ARGV[a + 5]
  local persisted = redis.call('GET', KEYS[k + 5])
  if inc ~= '' and inc == incarnation then
    if recorded ~= '' and (not persisted or lt(persisted, recorded)) then
      redis.call('SET', KEYS[k + 5], recorded, 'EX', ttl)
      persisted = recorded
      if ARGV[a + 8] ~= '0' then
        redis.call('INCRBY', KEYS[k + 6], ARGV[a + 8])
        redis.call('EXPIRE', KEYS[k + 6], ttl)
      end
    end
    local held = redis.call('GET', KEYS[k + 3]) or '0-0'
    if compacted ~= '' and position ~= '' and lt(held, position) then
      redis.call('SET', KEYS[k + 1], compacted, 'EX', ttl)
      redis.call('SET', KEYS[k + 2], ARGV[a + 6], 'EX', ttl)
      redis.call('SET', KEYS[k + 3], position, 'EX', ttl)
      if redis.call('DECRBY', KEYS[k + 6], ARGV[a + 7]) < 0 then
        redis.call('SET', KEYS[k + 6], 0)
      end
      redis.call('EXPIRE', KEYS[k + 6], ttl)
      held = position
    end
    if persisted then
      local upto = persisted
      if lt(held, upto) then upto = held end
      local minid = after(upto)
      if lt(keep, minid) then minid = keep end
      redis.call('XTRIM', KEYS[k + 4], 'MINID', minid)
      local mark = redis.call('GET', KEYS[k + 8])
      if mark and lt(minid, mark) then minid = mark end
      redis.call('SET', KEYS[k + 8], minid, 'EX', ttl)
    end
  elseif inc ~= '' then
    table.insert(stale, i)
  end
  local last = redis.call('XREVRANGE', KEYS[k + 4], '+', '-', 'COUNT', 1)
  if #last == 0 or (persisted and not lt(persisted, last[1][1])) then
    redis.call('SREM', modified, id)
  end
  if redis.call('GET', KEYS[k + 7]) == ARGV[1] then redis.call('DEL', KEYS[k + 7]) end
end
return stale
