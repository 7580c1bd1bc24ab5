-- KEYS: modifiedDocs, incarnation. ARGV: replica, ttl, retention ms, key prefix, then per
-- document (8): id, incarnation or '', read position or '', recorded position or '',
-- compacted or '', its hash, bytes folded, bytes recorded. Each document's keys are built
-- here, as SAVE and CLAIM build them.
local modified, prefix = KEYS[1], ARGV[4]
local incarnation = redis.call('GET', KEYS[2])
local ttl = ARGV[2]
local now = redis.call('TIME')
local stale = {}
local keep = string.format('%d-0', tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[3]))
local i = 0
for a = 5, #ARGV, 8 do
  i = i + 1
  local id, inc, position, recorded = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local compacted = ARGV[a + 4]
  local at = prefix .. 'doc:' .. id .. ':'
  local got = redis.call('MGET', at .. 'persisted', at .. 'pos', at .. 'trimmed', at .. 'flushing',
    at .. 'head')
  local persisted = got[1]
  if inc ~= '' and inc == incarnation then
    if recorded ~= '' and (not persisted or lt(persisted, recorded)) then
      redis.call('SET', at .. 'persisted', recorded, 'EX', ttl)
      persisted = recorded
      if ARGV[a + 7] ~= '0' then
        redis.call('INCRBY', at .. 'tail', ARGV[a + 7])
        redis.call('EXPIRE', at .. 'tail', ttl)
      end
    end
    local held = got[2] or '0-0'
    if compacted ~= '' and position ~= '' and lt(held, position) then
      redis.call('SET', at .. 'temp', compacted, 'EX', ttl)
      redis.call('SET', at .. 'lastSavedHash', ARGV[a + 5], 'EX', ttl)
      redis.call('SET', at .. 'pos', position, 'EX', ttl)
      if redis.call('DECRBY', at .. 'tail', ARGV[a + 6]) < 0 then
        redis.call('SET', at .. 'tail', 0)
      end
      redis.call('EXPIRE', at .. 'tail', ttl)
      held = position
    end
    if persisted then
      local upto = persisted
      if lt(held, upto) then upto = held end
      local minid = after(upto)
      if lt(keep, minid) then minid = keep end
      redis.call('XTRIM', at .. 'log', 'MINID', minid)
      local mark = got[3]
      if mark and lt(minid, mark) then minid = mark end
      redis.call('SET', at .. 'trimmed', minid, 'EX', ttl)
    end
  elseif inc ~= '' then
    table.insert(stale, i)
  end
  -- `head` is the log's last entry (SAVE appends and sets it in one step; a trim never takes
  -- the last entry PostgreSQL lacks); only without it is the log itself asked.
  local clean
  if persisted and got[5] then
    clean = not lt(persisted, got[5])
  else
    local last = redis.call('XREVRANGE', at .. 'log', '+', '-', 'COUNT', 1)
    clean = #last == 0 or (persisted and not lt(persisted, last[1][1]))
  end
  if clean then redis.call('SREM', modified, id) end
  if got[4] == ARGV[1] then redis.call('DEL', at .. 'flushing') end
end
return stale
