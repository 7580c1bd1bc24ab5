for k = 0, #KEYS - 1, 8 do
  for j = 1, 7 do redis.call('EXPIRE', KEYS[k + j], ARGV[2]) end
  if redis.call('GET', KEYS[k + 8]) == ARGV[1] then redis.call('DEL', KEYS[k + 8]) end
end
return 1
