-- obliterate.lua: delete a queue with every job in it (for tests and admins; unbounded work). Listing
-- indexes of the queue are left to their owners' listings, which skip jobs that are gone.
-- KEYS: the queue's block (lib.lua block).
-- ARGV[1] now ms or -1 (unused), ARGV[2] JSON plan {} (none).
-- Returns JSON: the number of jobs deleted.
local count = 0
for i = 2, 7 do count = count + redis.call('ZCARD', KEYS[i]) end
count = count + redis.call('ZCARD', KEYS[BLOCK_SIZE]) -- waiting-children (flow.lua)
redis.call('DEL', unpack(KEYS, 1, BLOCK_SIZE))
return cjson.encode(count)
