-- obliterate.lua: delete a queue with every job in it (for tests and admins; unbounded work).
-- KEYS: none (keys derive from the prefix; see lib.lua).
-- ARGV[1] prefix, ARGV[2] now ms or -1 (unused), ARGV[3] queue.
-- Returns the number of jobs deleted.
local q = ARGV[3]
local keys = {k_meta(q), k_events(q), k_owners(q), k_fair(q)}
local count = 0
for _, s in ipairs(STATES) do
  local ids = redis.call('ZRANGE', k_state(q, s), 0, -1)
  del_jobs(ids)
  count = count + #ids
  keys[#keys + 1] = k_state(q, s)
end
redis.call('DEL', unpack(keys))
redis.call('ZREM', K_DUE, q)
redis.call('SREM', K_QUEUES, q)
return count
