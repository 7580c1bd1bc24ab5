-- KEYS: none. ARGV: replica, ttl, key prefix, then the document ids.
local names = {'temp', 'lastSavedHash', 'stamp', 'pos', 'log', 'persisted', 'tail', 'head'}
for i = 4, #ARGV do
  local at = ARGV[3] .. 'doc:' .. ARGV[i] .. ':'
  for _, name in ipairs(names) do redis.call('EXPIRE', at .. name, ARGV[2]) end
  if redis.call('GET', at .. 'flushing') == ARGV[1] then redis.call('DEL', at .. 'flushing') end
end
return 1
