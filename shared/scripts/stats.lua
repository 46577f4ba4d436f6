-- stats.lua: per-queue counts of every state, paused flag and the oldest waiting job's eligible time;
-- with metrics, also the queue's whole meta hash (counters, histograms, throughput slots).
-- KEYS: none (keys derive from the prefix; see lib.lua).
-- ARGV[1] prefix, ARGV[2] now ms or -1, ARGV[3] "1" with metrics | "0", ARGV[4..] queues (none: all).
-- Returns JSON {now, q: [{q, c: [counts in lib.lua STATES order], paused, oldest: ms|null, m: flat}]}.
local now = now_ms()
local queues = {}
for i = 4, #ARGV do queues[#queues + 1] = ARGV[i] end
if #queues == 0 then queues = redis.call('SMEMBERS', K_QUEUES) end
local out = {}
for _, q in ipairs(queues) do
  local counts = {}
  for i, s in ipairs(STATES) do counts[i] = redis.call('ZCARD', k_state(q, s)) end
  local entry = {q = q, c = counts}
  local meta
  if ARGV[3] == '1' then
    meta = redis.call('HGETALL', k_meta(q))
    entry.m = meta
    entry.paused = hash_to_table(meta).paused == '1'
  else
    entry.paused = redis.call('HGET', k_meta(q), 'paused') == '1'
  end
  if counts[1] > 0 then
    -- The oldest waiting job is the first of some priority level's band (FIFO within each band): the
    -- level's first entry, and when that is a job handed back (front band), its first normal entry.
    local oldest = nil
    local function consider(min, max)
      local first = redis.call('ZRANGEBYSCORE', k_state(q, 'waiting'), min, max, 'WITHSCORES', 'LIMIT', 0, 1)
      if not first[1] then return nil end
      local ra = tonumber(unpack_m(redis.call('HGET', k_job(first[1]), 'm')).ra)
      if ra and (not oldest or ra < oldest) then oldest = ra end
      return tonumber(first[2])
    end
    for p = 0, 9 do
      local level = p * PRIO_SCALE
      local score = consider(n2s(level - FRONT_BAND), '(' .. n2s(level + PRIO_SCALE - FRONT_BAND))
      if score and score < level then consider(n2s(level), '(' .. n2s(level + PRIO_SCALE - FRONT_BAND)) end
    end
    entry.oldest = oldest
  end
  out[#out + 1] = entry
end
return cjson.encode({now = now, q = out})
