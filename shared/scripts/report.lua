-- report.lua: progress and log lines of many active jobs of one queue in one call, fenced by token.
-- Logs keep the last LIMITS.log_lines lines (Python bounds each line). One progress event per call.
-- KEYS: the queue's block (lib.lua block).
-- ARGV[1] now ms or -1, ARGV[2] JSON plan {u: [{id: unique id, k: token, p: progress|null, g: [lines]}]}.
-- Returns JSON [[ok 0|1, cancel requested 0|1], ...].
local now = now_ms(ARGV[1])
local Q = block(0)
local updates = cjson.decode(ARGV[2]).u
local ids = {}
for i, u in ipairs(updates) do ids[i] = u.id end
local recs = records(Q, ids)
local replies, writes, moved, progress = {}, {}, {}, {}
for i, u in ipairs(updates) do
  local rec = recs[i]
  local m = unpack_m(rec[2])
  local cancel = m.x == '1' and 1 or 0
  if m.s == 'active' and m.k == u.k then
    if u.p ~= cjson.null and u.p then
      m.p = u.p
      writes[#writes + 1] = u.id .. ':m'; writes[#writes + 1] = pack_m(m)
      moved[#moved + 1] = u.id
      progress[#progress + 1] = n2s(u.p)
    end
    local logs = append_logs(rec[4], u.g)
    if logs then writes[#writes + 1] = u.id .. ':g'; writes[#writes + 1] = logs end
    replies[i] = {1, cancel}
  else
    replies[i] = {0, cancel}
  end
end
hset_flat(Q.jobs, writes)
if #moved > 0 then emit(meta(Q, now), 'active', moved, progress) end
commit()
return cjson.encode(replies)
