-- report.lua: progress and log lines of many active jobs in one call, fenced by token.
-- Logs keep the last 100 lines (Python bounds each line). One progress event per queue.
-- KEYS: none (keys derive from the prefix; see lib.lua).
-- ARGV[1] prefix, ARGV[2] now ms or -1, ARGV[3] JSON [{id, k: token, p: progress|null, g: [lines]}].
-- Returns JSON [[ok 0|1, cancel requested 0|1], ...].
local now = now_ms()
local updates = cjson.decode(ARGV[3])
local replies = {}
local events = {}
for i, u in ipairs(updates) do
  local f = redis.call('HMGET', k_job(u.id), 'm', 'g', 'd')
  local m = unpack_m(f[1])
  local cancel = m.x == '1' and 1 or 0
  if m.s == 'active' and m.k == u.k then
    local fields = {}
    if u.p ~= cjson.null and u.p then
      m.p = u.p
      fields[#fields + 1] = 'm'; fields[#fields + 1] = pack_m(m)
    end
    if u.g and #u.g > 0 then
      local list = {}
      if f[2] then list = cjson.decode(f[2]) end
      for _, line in ipairs(u.g) do list[#list + 1] = line end
      while #list > LIMITS.log_lines do table.remove(list, 1) end
      fields[#fields + 1] = 'g'; fields[#fields + 1] = cjson.encode(list)
    end
    if #fields > 0 then
      redis.call('HSET', k_job(u.id), unpack(fields))
      if u.p ~= cjson.null and u.p then
        local q = head(f[3]).q
        events[q] = events[q] or {ids = {}, p = {}}
        table.insert(events[q].ids, u.id)
        table.insert(events[q].p, n2s(u.p))
      end
    end
    replies[i] = {1, cancel}
  else
    replies[i] = {0, cancel}
  end
end
for q, e in pairs(events) do add_event(q, now, 'active', e.ids, e.p) end
return cjson.encode(replies)
