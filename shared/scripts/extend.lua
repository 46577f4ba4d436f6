-- extend.lua: heartbeat: move the lease deadline of many active jobs of one queue to now + ms, fenced by
-- token.
-- KEYS: the queue's block (lib.lua block).
-- ARGV[1] now ms or -1, ARGV[2] JSON plan {ms: lease ms, leases: [[unique id, token], ...]}.
-- Returns JSON [[ok 0|1, cancel requested 0|1], ...].
local now = now_ms(ARGV[1])
local Q = block(0)
local plan = cjson.decode(ARGV[2])
local until_ = now + plan.ms
local ids = {}
for i, lease in ipairs(plan.leases) do ids[i] = lease[1] end
local recs = records(Q, ids)
local replies, moved = {}, {}
for i, id in ipairs(ids) do
  local m = unpack_m(recs[i][2])
  local cancel = m.x == '1' and 1 or 0
  if m.s == 'active' and m.k == plan.leases[i][2] then
    moved[#moved + 1] = n2s(until_)
    moved[#moved + 1] = id
    replies[i] = {1, cancel}
  else
    replies[i] = {0, cancel}
  end
end
if #moved > 0 then
  redis.call('ZADD', Q.state.active, 'XX', unpack(moved))
  -- A lease can move earlier than the claim set it: keep the reap time a lower bound, and the queue due.
  local s = meta(Q, now)
  if tonumber(s.v.nr) == nil or until_ < tonumber(s.v.nr) then
    mlower(s, 'nr', until_)
    due_by(s, until_)
  end
end
commit()
return cjson.encode(replies)
