-- policy.lua: write a queue's policy (QueueOptions.stored()) where every script reads it: the queue
-- meta's 'pol' field. Written by each engine before it first uses a queue, so all processes agree.
-- KEYS: the queue's block (lib.lua block).
-- ARGV[1] now ms or -1 (unused), ARGV[2] JSON plan {policy: the policy's JSON text}.
-- Returns JSON true.
local Q = block(0)
local text = cjson.decode(ARGV[2]).policy
redis.call('HSET', Q.meta, 'pol', text)
-- Without a limit per owner nothing keeps the per-owner counts: drop them, so a limit set again later
-- starts from none rather than from stale ones.
if policy(text).oc == 0 then redis.call('DEL', Q.owners) end
return cjson.encode(true)
