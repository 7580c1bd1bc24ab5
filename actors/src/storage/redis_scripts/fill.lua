if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('SISMEMBER', KEYS[8], ARGV[5]) == 1 then
  return 0
end
local last = redis.call('XREVRANGE', KEYS[5], '+', '-', 'COUNT', 1)
local pos = '0-0'
if #last > 0 then pos = last[1][1] end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[4])
if ARGV[3] ~= '' then redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4]) end
redis.call('SET', KEYS[4], pos, 'EX', ARGV[4])
redis.call('DEL', KEYS[7])
return 1
