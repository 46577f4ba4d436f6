-- clean.lua: delete up to `limit` jobs of a queue's terminal state finished before a cutoff.
-- KEYS: the queue's block (lib.lua block).
-- ARGV[1] now ms or -1, ARGV[2] JSON plan {state: completed|failed|cancelled, older_than: ms, limit}.
-- Returns JSON: the number of jobs deleted.
local now = now_ms(ARGV[1])
local Q = block(0)
local plan = cjson.decode(ARGV[2])
local key = Q.state[plan.state]
local ids = redis.call('ZRANGEBYSCORE', key, '-inf', n2s(now - plan.older_than), 'LIMIT', 0, plan.limit)
del_records(Q, ids)
zrem(key, ids)
return cjson.encode(#ids)
