-- stats.lua (read-only): per queue, the counts of every state, paused flag and the oldest waiting job's
-- eligible time; with metrics, also the queue's whole meta hash (counters, histograms, throughput slots).
-- KEYS: one block per queue (lib.lua block); one call reads many queues where they share a server.
-- ARGV[1] now ms or -1, ARGV[2] JSON plan {metrics: true | false}.
-- Returns JSON [{now, c: [counts in lib.lua STATES order, then waiting-children], paused, oldest: ms|null, m: flat meta}, ...]
-- in block order.
local now = now_ms(ARGV[1])
local with_metrics = cjson.decode(ARGV[2]).metrics
local out = {}
for base = 0, #KEYS - BLOCK_SIZE, BLOCK_SIZE do
  local Q = block(base)
  local counts = {}
  for i, st in ipairs(STATES) do counts[i] = redis.call('ZCARD', Q.state[st]) end
  counts[#counts + 1] = redis.call('ZCARD', Q.state['waiting-children'])
  local entry = {now = now, c = counts}
  if with_metrics then
    local flat = redis.call('HGETALL', Q.meta)
    entry.m = flat
    for i = 1, #flat, 2 do if flat[i] == 'paused' then entry.paused = flat[i + 1] == '1' end end
    entry.paused = entry.paused or false
  else
    entry.paused = redis.call('HGET', Q.meta, 'paused') == '1'
  end
  if counts[1] > 0 then
    -- The oldest waiting job is the first of some priority level's band (FIFO within each band): the
    -- level's first entry, and when that is a job handed back (front band), its first normal entry.
    local firsts = {}
    local function first(min, max)
      local got = redis.call('ZRANGEBYSCORE', Q.state.waiting, min, max, 'WITHSCORES', 'LIMIT', 0, 1)
      if not got[1] then return nil end
      firsts[#firsts + 1] = got[1]
      return tonumber(got[2])
    end
    for p = 0, 9 do
      local level = p * PRIO_SCALE
      local score = first(n2s(level - FRONT_BAND), '(' .. n2s(level + PRIO_SCALE - FRONT_BAND))
      if score and score < level then first(n2s(level), '(' .. n2s(level + PRIO_SCALE - FRONT_BAND)) end
    end
    local oldest = nil
    for _, rec in ipairs(records(Q, firsts)) do
      local ra = tonumber(unpack_m(rec[2] or nil).ra)
      if ra and (not oldest or ra < oldest) then oldest = ra end
    end
    entry.oldest = oldest
  end
  out[#out + 1] = entry
end
return cjson.encode(out)
