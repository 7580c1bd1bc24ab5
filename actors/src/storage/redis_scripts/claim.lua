-- KEYS: modifiedDocs, incarnation. ARGV: replica, claim ms, ttl, min bytes, max entries,
-- fresh ms, key prefix, then the document ids (each document's keys are built here, as SAVE
-- builds them: passed as keys, eight names a document cost more than the commands using them).
local modified = KEYS[1]
local replica, ttl, prefix = ARGV[1], tonumber(ARGV[3]), ARGV[7]
local names = {'temp', 'lastSavedHash', 'stamp', 'pos', 'log', 'persisted', 'tail', 'head'}
local incarnation = redis.call('GET', KEYS[2])
if not incarnation then
  local t = redis.call('TIME')
  incarnation = t[1] .. string.format('%06d', tonumber(t[2]))
  redis.call('SET', KEYS[2], incarnation)
end
local fresh = tonumber(ARGV[6])
local since = 0
if fresh > 0 then
  local now = redis.call('TIME')
  since = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - fresh
end
local out = {}
for i = 8, #ARGV do
  local doc = ARGV[i]
  local at = prefix .. 'doc:' .. doc .. ':'
  local got = redis.call('MGET', at .. 'flushing', at .. 'persisted', at .. 'pos', at .. 'tail')
  local held, persisted = got[1], got[2]
  if held and held ~= replica then
    out[#out + 1] = {'busy'}
  elseif fresh > 0 and not held and persisted and split(persisted) > since then
    out[#out + 1] = {'fresh', persisted}
  else
    redis.call('SET', at .. 'flushing', replica, 'PX', ARGV[2])
    -- Every renewal renews `head` with the rest and every key is written with the TTL, so no
    -- key expires before `head`: while `head` has half the TTL left, so has everything.
    if redis.call('PTTL', at .. 'head') < ttl * 500 then
      for _, name in ipairs(names) do redis.call('EXPIRE', at .. name, ttl) end
    end
    local pos = got[3] or '0-0'
    persisted = persisted or '0-0'
    local len = redis.call('XLEN', at .. 'log')
    -- `temp` is never empty: JSON text, or Yjs state behind its marker.
    local marker = redis.call('GETRANGE', at .. 'temp', 0, 4)
    local exists = marker ~= '' and 1 or 0
    local json = exists == 1 and marker ~= '\0yjs\0'
    local temp, from, compact, size, waiting = 0, pos, 0, 0, 0
    if json then
      temp = 1
    else
      size = redis.call('STRLEN', at .. 'temp')
      waiting = tonumber(got[4] or '0')
      from = persisted
      if waiting >= math.max(tonumber(ARGV[4]), size) or len >= tonumber(ARGV[5]) then
        compact = 1
        if lt(pos, from) then from = pos end
        if size > 0 then temp = 1 end
      end
    end
    out[#out + 1] = {
      temp,
      pos,
      persisted,
      from,
      redis.call('SISMEMBER', modified, doc),
      compact,
      len,
      exists,
      waiting,
      size,
    }
  end
end
out[#out + 1] = incarnation
return out
