-- policy.lua: write a queue's policy (QueueOptions.stored()) where every script reads it: the queue
-- meta's 'pol' field. Written by each engine before it first uses a queue, so all processes agree.
-- KEYS: the queue's block (lib.lua block).
-- ARGV[1] now ms or -1 (unused), ARGV[2] the policy's JSON text.
-- Returns 1.
local Q = block(0)
redis.call('HSET', Q.meta, 'pol', ARGV[2])
-- Without a limit per owner nothing keeps the per-owner counts: drop them, so a limit set again later
-- starts from none rather than from stale ones.
if policy(ARGV[2]).oc == 0 then redis.call('DEL', Q.owners) end
return 1
