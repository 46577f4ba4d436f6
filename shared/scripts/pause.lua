-- pause.lua: pause or resume a queue. Paused queues leave the due index, so claims and idle ticks skip
-- them; resuming recomputes the queue's due time from its indexes.
-- KEYS: none (keys derive from the prefix; see lib.lua).
-- ARGV[1] prefix, ARGV[2] now ms or -1, ARGV[3] queue, ARGV[4] "1" pause | "0" resume.
-- Returns 1 when paused, 0 when running.
local q = ARGV[3]
if ARGV[4] == '1' then
  redis.call('HSET', k_meta(q), 'paused', '1')
  redis.call('ZREM', K_DUE, q)
  redis.call('SADD', K_QUEUES, q)
  return 1
end
redis.call('HDEL', k_meta(q), 'paused')
refresh_due(q, false, now_ms(), nil)
return 0
