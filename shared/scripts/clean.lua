-- clean.lua: delete up to `limit` jobs of a queue's terminal state finished before a cutoff.
-- KEYS: none (keys derive from the prefix; see lib.lua).
-- ARGV[1] prefix, ARGV[2] now ms or -1, ARGV[3] queue, ARGV[4] state (completed|failed|cancelled),
-- ARGV[5] older than ms, ARGV[6] limit.
-- Returns the number of jobs deleted.
local now = now_ms()
local q, state = ARGV[3], ARGV[4]
local ids = redis.call('ZRANGEBYSCORE', k_state(q, state), '-inf', n2s(now - tonumber(ARGV[5])),
  'LIMIT', 0, tonumber(ARGV[6]))
if #ids == 0 then return 0 end
del_jobs(ids)
zrem(k_state(q, state), ids)
return #ids
