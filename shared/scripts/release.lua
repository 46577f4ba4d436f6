-- release.lua: hand claimed-but-unstarted jobs back at once, the attempt not counted. They go to the
-- front of their priority level (lib.lua requeue_front: ahead of the level's other waiting jobs, FIFO
-- among jobs handed back). Fenced by token.
-- KEYS: none (keys derive from the prefix; see lib.lua).
-- ARGV[1] prefix, ARGV[2] now ms or -1, ARGV[3..] job id, token pairs.
-- Returns JSON [[ok 0|1, state|""], ...].
local now = now_ms()
local replies = {}
local groups = {}
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local key = k_job(id)
  local f = redis.call('HMGET', key, 'm', 'd')
  local m = unpack_m(f[1])
  if m.s == 'active' and m.k == token then
    local h = head(f[2])
    m.s, m.a, m.sa = 'queued', math.max(0, m.a - 1), ''
    redis.call('HSET', key, 'm', pack_m(m))
    local g = groups[h.q] or {ids = {}, items = {}, owners = {}}
    groups[h.q] = g
    g.ids[#g.ids + 1] = id
    g.items[#g.items + 1] = {h.p, id}
    g.owners[h.o] = (g.owners[h.o] or 0) - 1
    replies[#replies + 1] = {1, 'waiting'}
  elseif f[1] and m.k == token then
    replies[#replies + 1] = {1, shown_state(m, now)}
  else
    replies[#replies + 1] = {0, shown_state(m, now)}
  end
end
for q, g in pairs(groups) do
  zrem(k_state(q, 'active'), g.ids)
  requeue_front(q, g.items)
  local meta = redis.call('HMGET', k_meta(q), 'paused', 'pol')
  if policy(meta[2]).oc > 0 then add_owner_active(q, g.owners) end
  mark_due(q, now, meta[1] == '1')
  add_event(q, now, 'waiting', g.ids)
end
return cjson.encode(replies)
