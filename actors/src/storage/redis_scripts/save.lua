-- Saves of any number of documents, each as the single save it would be on its own.
-- KEYS: modifiedDocs, changed, then per save (9): temp, lastSavedHash, stamp, pos, log,
-- persisted, tail, head, followers.
-- ARGV: ttl, replica, carry limit, mark, then per save (7): content, hash, stamp, id, kind,
-- channel, restore.
-- Returns per save: code (0 superseded, 1 stored, 2 duplicate), entry id, the entry before it.
local ttl, replica, carry, mark = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local out = {}
local function save(k, a)
  local content, hash, stamp, doc, kind, channel, restore =
    ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6] == '1'
  if kind == 'json' then
    local held = redis.call('GET', KEYS[k + 2])
    local later = stamp ~= '' and (not held or held < stamp)
    if redis.call('GET', KEYS[k + 1]) == hash and not (restore and later) then
      return 2, '', ''
    end
    if held and not later then return 0, '', '' end
  end
  local who = restore and '' or replica
  local id = redis.call('XADD', KEYS[k + 4], '*', 'r', who, 'k', kind, 'h', hash, 's', stamp, 'd', content)
  if kind == 'json' then
    redis.call('SET', KEYS[k], content, 'EX', ttl)
    redis.call('SET', KEYS[k + 1], hash, 'EX', ttl)
    if stamp == '' then redis.call('DEL', KEYS[k + 2])
    else redis.call('SET', KEYS[k + 2], stamp, 'EX', ttl) end
    redis.call('SET', KEYS[k + 3], id, 'EX', ttl)
  else
    if redis.call('INCRBY', KEYS[k + 6], #content) == #content then redis.call('EXPIRE', KEYS[k + 6], ttl) end
  end
  if redis.call('PTTL', KEYS[k + 4]) < ttl * 900 then
    for i = k, k + 6 do redis.call('EXPIRE', KEYS[i], ttl) end
  end
  redis.call('SADD', KEYS[1], doc)
  if mark == '1' then redis.call('HINCRBY', KEYS[2], kind .. '\n' .. who .. '\n' .. doc, 1) end
  local prev = redis.call('SET', KEYS[k + 7], id, 'EX', ttl, 'GET') or ''
  -- The notice goes out only when a replica other than this one follows the document (its
  -- own replica hears of the append from the answer); a restored entry is every room's.
  local followers = redis.call('ZRANGE', KEYS[k + 8], 0, 1)
  if restore or #followers > 1 or (#followers == 1 and followers[1] ~= replica) then
    local from = #who .. ':' .. who
    if #content <= carry then
      redis.call('PUBLISH', channel, 'E' .. from .. prev .. ' ' .. id .. ' ' .. kind .. ' ' .. hash
        .. ' ' .. #stamp .. ':' .. stamp .. content)
    else
      redis.call('PUBLISH', channel, 'L' .. from .. id)
    end
  end
  return 1, id, prev
end
for i = 0, (#ARGV - 4) / 7 - 1 do
  local code, id, prev = save(3 + i * 9, 5 + i * 7)
  out[#out + 1] = code
  out[#out + 1] = id
  out[#out + 1] = prev
end
return out
