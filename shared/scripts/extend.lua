-- extend.lua: heartbeat: move the lease deadline of many active jobs to now + ms, fenced by token.
-- KEYS: none (keys derive from the prefix; see lib.lua).
-- ARGV[1] prefix, ARGV[2] now ms or -1, ARGV[3] lease ms, ARGV[4..] job id, token pairs.
-- Returns JSON [[ok 0|1, cancel requested 0|1], ...].
local now = now_ms()
local until_ = n2s(now + tonumber(ARGV[3]))
local replies = {}
for i = 4, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', k_job(id), 'm', 'd')
  local m = unpack_m(f[1])
  local cancel = m.x == '1' and 1 or 0
  if m.s == 'active' and m.k == token then
    redis.call('ZADD', k_state(head(f[2]).q, 'active'), 'XX', until_, id)
    replies[#replies + 1] = {1, cancel}
  else
    replies[#replies + 1] = {0, cancel}
  end
end
return cjson.encode(replies)
