-- Saves of any number of documents, each as the single save it would be on its own.
-- KEYS: modifiedDocs, changed, following.
-- ARGV: ttl, replica, carry limit, mark, key prefix, then per save (6): content, hash, stamp,
-- id, kind, flags (1: a restore, 2: renew the keys' TTL, 3: both).
-- A document's keys are its id behind the prefix (`doc:{id}:log`, ...), built here rather than
-- passed: Redis turns every argument of a call into a string of Lua's, and nine keys a save
-- cost more of its time than the commands that use them.
-- Returns per save: code (0 superseded, 1 stored, 2 duplicate), entry id, the entry before it;
-- then 1 if a replica other than this one follows any document, else 0.
local ttl, replica, carry, mark, prefix =
  ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local names = {'temp', 'lastSavedHash', 'stamp', 'pos', 'log', 'persisted', 'tail', 'head'}
-- Whether a replica other than this one follows any document: only then is a document's own
-- followers set worth reading. A lapsed replica stays until a FOLLOW drops it, which only
-- costs a look at the sets.
local following = redis.call('ZRANGE', KEYS[3], 0, 1)
local others = #following > 1 or (#following == 1 and following[1] ~= replica)
local out, stored = {}, {}
local function save(a)
  local content, hash, stamp, doc, kind, flags =
    ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], tonumber(ARGV[a + 5])
  local restore, renew = flags % 2 == 1, flags >= 2
  local at = prefix .. 'doc:' .. doc .. ':'
  if kind == 'json' then
    local held = redis.call('GET', at .. 'stamp')
    local later = stamp ~= '' and (not held or held < stamp)
    if redis.call('GET', at .. 'lastSavedHash') == hash and not (restore and later) then
      return 2, '', ''
    end
    if held and not later then return 0, '', '' end
  end
  local who = restore and '' or replica
  local log, id = at .. 'log'
  -- An entry without a stamp has no `s` (a reader takes a missing one as none).
  if stamp == '' then
    id = redis.call('XADD', log, '*', 'r', who, 'k', kind, 'h', hash, 'd', content)
  else
    id = redis.call('XADD', log, '*', 'r', who, 'k', kind, 'h', hash, 's', stamp, 'd', content)
  end
  if kind == 'json' then
    redis.call('SET', at .. 'temp', content, 'EX', ttl)
    redis.call('SET', at .. 'lastSavedHash', hash, 'EX', ttl)
    if stamp == '' then redis.call('DEL', at .. 'stamp')
    else redis.call('SET', at .. 'stamp', stamp, 'EX', ttl) end
    redis.call('SET', at .. 'pos', id, 'EX', ttl)
  end
  local prev = redis.call('SET', at .. 'head', id, 'KEEPTTL', 'GET')
  -- The replica renews the TTL every tenth of it; Redis does where the keys are new to it.
  if renew or not prev then
    for _, name in ipairs(names) do redis.call('EXPIRE', at .. name, ttl) end
  end
  prev = prev or ''
  stored[#stored + 1] = doc
  if mark == '1' then redis.call('HINCRBY', KEYS[2], kind .. '\n' .. who .. '\n' .. doc, 1) end
  -- The notice goes out only when a replica other than this one follows the document (its
  -- own replica hears of the append from the answer); a restored entry is every room's.
  local publish = restore
  if others and not publish then
    local followers = redis.call('ZRANGE', at .. 'followers', 0, 1)
    publish = #followers > 1 or (#followers == 1 and followers[1] ~= replica)
  end
  if publish then
    local from = #who .. ':' .. who
    if #content <= carry then
      redis.call('PUBLISH', at .. 'events', 'E' .. from .. prev .. ' ' .. id .. ' ' .. kind .. ' '
        .. hash .. ' ' .. #stamp .. ':' .. stamp .. content)
    else
      redis.call('PUBLISH', at .. 'events', 'L' .. from .. id)
    end
  end
  return 1, id, prev
end
for a = 6, #ARGV, 6 do
  local code, id, prev = save(a)
  out[#out + 1] = code
  out[#out + 1] = id
  out[#out + 1] = prev
end
if #stored > 0 then redis.call('SADD', KEYS[1], unpack(stored)) end
out[#out + 1] = others and 1 or 0
return out
