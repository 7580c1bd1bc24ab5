local pos = redis.call('GET', KEYS[3]) or '0-0'
return {
  redis.call('GET', KEYS[1]) or false,
  redis.call('GET', KEYS[2]) or false,
  pos,
  redis.call('XRANGE', KEYS[4], '(' .. pos, '+'),
  redis.call('SISMEMBER', KEYS[5], ARGV[1]),
}
