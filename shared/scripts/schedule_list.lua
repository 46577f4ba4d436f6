-- schedule_list.lua: an owner's schedules in one queue (read-only).
-- KEYS[1] the owner's index of schedules in the queue, KEYS[2] the queue's schedules hash.
-- ARGV[1] now ms or -1 (unused), ARGV[2] JSON plan {limit}.
-- Returns JSON [record JSON text, ...] in id order (ids are time-ordered: oldest first).
local ids = redis.call('ZRANGE', KEYS[1], 0, cjson.decode(ARGV[2]).limit - 1)
if #ids == 0 then return '[]' end
local out = {}
for _, rec in ipairs(redis.call('HMGET', KEYS[2], unpack(ids))) do
  if rec then out[#out + 1] = rec end
end
return cjson.encode(out)
