-- release.lua: hand claimed-but-unstarted jobs of one queue back at once, the attempt not counted. They go
-- to the front of their priority level (lib.lua requeue_front: ahead of the level's other waiting jobs,
-- FIFO among jobs handed back). Fenced by token.
-- KEYS: the queue's block (lib.lua block).
-- ARGV[1] now ms or -1, ARGV[2] JSON plan {leases: [[unique id, token], ...]}.
-- Returns JSON [[ok 0|1, state|""], ...].
local now = now_ms(ARGV[1])
local Q = block(0)
local plan = cjson.decode(ARGV[2])
local ids = {}
for i, lease in ipairs(plan.leases) do ids[i] = lease[1] end
local recs = records(Q, ids)
local replies, writes, moved, items, owners = {}, {}, {}, {}, {}
for i, id in ipairs(ids) do
  local rec = recs[i]
  local token = plan.leases[i][2]
  local m = unpack_m(rec[2])
  if m.s == 'active' and m.k == token then
    local h = head(rec[1])
    m.s, m.a, m.sa = 'queued', math.max(0, m.a - 1), ''
    writes[#writes + 1] = id .. ':m'; writes[#writes + 1] = pack_m(m)
    moved[#moved + 1] = id
    items[#items + 1] = {h.p, id}
    owners[h.o] = (owners[h.o] or 0) - 1
    replies[i] = {1, 'waiting'}
  elseif rec[2] and m.k == token then
    replies[i] = {1, shown_state(m, now)}
  else
    replies[i] = {0, shown_state(m, now)}
  end
end
if #moved > 0 then
  local s = meta(Q, now)
  hset_flat(Q.jobs, writes)
  zrem(Q.state.active, moved)
  requeue_front(s, items)
  if s.pol.oc > 0 then add_owner_active(Q, owners) end
  due_by(s, now)
  emit(s, 'waiting', moved)
end
commit()
return cjson.encode(replies)
