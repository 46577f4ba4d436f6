-- policy.lua: write queues' policies (QueueOptions.stored()) where every script reads them: the queue
-- meta's 'pol' field. Written by each engine before it first uses a queue, so all processes agree.
-- KEYS: none (keys derive from the prefix; see lib.lua).
-- ARGV[1] prefix, ARGV[2] now ms or -1 (unused), ARGV[3] JSON {queue: policy JSON text}.
-- Returns the number of queues written.
local count = 0
for q, text in pairs(cjson.decode(ARGV[3])) do
  redis.call('HSET', k_meta(q), 'pol', text)
  -- Without a limit per owner nothing keeps the per-owner counts: drop them, so a limit set again
  -- later starts from none rather than from stale ones.
  if policy(text).oc == 0 then redis.call('DEL', k_owners(q)) end
  count = count + 1
end
return count
