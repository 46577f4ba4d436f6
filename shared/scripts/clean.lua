-- clean.lua: delete up to `limit` jobs of a queue's terminal state finished before a cutoff.
-- KEYS: the queue's block (lib.lua block).
-- ARGV[1] now ms or -1, ARGV[2] state (completed|failed|cancelled), ARGV[3] older than ms, ARGV[4] limit.
-- Returns the number of jobs deleted.
local now = now_ms(ARGV[1])
local Q = block(0)
local key = Q.state[ARGV[2]]
local ids = redis.call('ZRANGEBYSCORE', key, '-inf', n2s(now - tonumber(ARGV[3])), 'LIMIT', 0, tonumber(ARGV[4]))
if #ids == 0 then return 0 end
del_records(Q, ids)
zrem(key, ids)
return #ids
