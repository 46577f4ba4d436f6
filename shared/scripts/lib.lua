-- lib.lua: helpers prepended to every script (Redis scripts cannot include files).
-- Every script's ARGV[1] is the deployment key prefix with its separator ("jobq:"); ARGV[2] is "now" in
-- epoch ms, or "-1" to read the Redis server's clock (the lease authority, see docs/redis-schema.md).
-- Key names below must match shared/keys.py (tests/integration/test_engine_keys.py pins the pair).
-- LIMITS (errors and log lines a job keeps) and DEFAULT_POLICY come from Python, in the header shared.store
-- prepends (shared/limits.py, QueueOptions).
local P = ARGV[1]
local unpack = unpack or table.unpack
local PRIO_SCALE = 17592186044416 -- 2^44: waiting score = priority * 2^44 + sequence, exact in a double
local FRONT_BAND = 8796093022208 -- 2^43: jobs handed back wait at priority * 2^44 - 2^43 + rseq
local STATES = {'waiting', 'delayed', 'active', 'completed', 'failed', 'cancelled'}
local RUN_BOUNDS = {50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000} -- ms, per bucket

local function k_job(id) return P .. 'job:' .. id end
local function k_state(q, s) return P .. 'q:' .. q .. ':' .. s end
local function k_meta(q) return P .. 'q:' .. q .. ':meta' end
local function k_events(q) return P .. 'q:' .. q .. ':events' end
local function k_owners(q) return P .. 'q:' .. q .. ':owners' end
local function k_fair(q) return P .. 'q:' .. q .. ':fair' end
local K_DUE = P .. 'due'
local K_QUEUES = P .. 'queues'

-- A queue's policy as QueueOptions.stored() wrote it to the queue's meta field 'pol' (Engine.publish_policies):
-- kc/kn keep completed ms/count, kf/kx keep failed/cancelled ms, rn/ri rate limit count/interval ms,
-- cc concurrency limit, oc limit per owner (0: none). `text` is that field as read (false when absent: DEFAULT_POLICY).
local function policy(text)
  if not text then return DEFAULT_POLICY end
  local p = cjson.decode(text)
  for name, value in pairs(DEFAULT_POLICY) do if p[name] == nil then p[name] = value end end
  return p
end

local function now_ms()
  local v = tonumber(ARGV[2])
  if v and v >= 0 then return v end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers as exact decimal text: Lua's default number formatting switches to exponents at 15 digits.
local function n2s(x) return string.format('%.0f', x) end

local function fail(code, message) return redis.error_reply('JOBQ:' .. code .. ' ' .. message) end

-- The policy head of the immutable "d" field: Python writes q (queue), o (owner), p (priority),
-- m (max attempts), t (timeout s) and b (backoff, only when not the default) first and "y" (type)
-- right after, so the head decodes without touching the payload.
local DEFAULT_BACKOFF = {'e', 1, 2, 3600, 0.1}
local function head(d)
  local cut = string.find(d, ',"y":', 1, true)
  local h = cjson.decode(string.sub(d, 1, cut - 1) .. '}')
  if not h.b then h.b = DEFAULT_BACKOFF end
  return h
end

-- The mutable state of a job, packed in one field "m" (one hash field costs ~90 bytes):
-- state|attempts|token|started ms|finished ms|eligible ms|progress|cancel requested ("1").
-- States in "m": queued (waiting or delayed: the eligible time tells which), active, completed,
-- failed, cancelled.
local M_FIELDS = {'s', 'a', 'k', 'sa', 'fa', 'ra', 'p', 'x'}
local function unpack_m(text)
  local t, i = {}, 1
  for part in string.gmatch((text or '') .. '|', '([^|]*)|') do
    if M_FIELDS[i] then t[M_FIELDS[i]] = part end
    i = i + 1
  end
  t.a = tonumber(t.a) or 0
  return t
end
-- The state a job shows (and the index it is in, once claims have promoted due delayed jobs).
local function shown_state(m, now)
  if m.s == 'queued' then
    if (tonumber(m.ra) or 0) > now then return 'delayed' end
    return 'waiting'
  end
  return m.s or ''
end
local function pack_m(t)
  local out = {}
  for i, f in ipairs(M_FIELDS) do
    local v = t[f]
    if v == nil then v = '' elseif type(v) == 'number' then v = string.format('%.0f', v) end
    out[i] = v
  end
  return table.concat(out, '|')
end

local function batch(cmd, key, items)
  for i = 1, #items, 500 do
    local part = {}
    for j = i, math.min(i + 499, #items) do part[#part + 1] = items[j] end
    redis.call(cmd, key, unpack(part))
  end
end

-- Scores and members for ZADD, flattened: {score1, member1, score2, member2, ...}.
local function zadd(key, pairs_)
  if #pairs_ > 0 then
    for i = 1, #pairs_, 1000 do
      local part = {}
      for j = i, math.min(i + 999, #pairs_) do part[#part + 1] = pairs_[j] end
      redis.call('ZADD', key, unpack(part))
    end
  end
end

local function zrem(key, ids) if #ids > 0 then batch('ZREM', key, ids) end end

-- Waiting scores for jobs arriving in waiting (submitted, promoted, re-run): priority * 2^44 + a sequence.
-- FIFO by the queue's `seq`; in a queue with a limit per owner (`oc`), a fair share instead: each owner's
-- job takes the next of that owner's virtual sequence (`fair` hash), started at the queue's virtual clock
-- `vc` (the furthest sequence claimed), so one owner's backlog cannot delay another owner's first job:
-- it lands beside the jobs being claimed now, not behind the backlog. items = {{priority, id, owner}}
-- (owner nil when unknown: the clock's next). `vc` and `seq` are the meta fields as the caller already
-- read them (a queue turned fair goes on from its seq). Returns flattened ZADD pairs.
local function arrival_scores(q, items, oc, vc, seq)
  local pairs_ = {}
  if oc == 0 then
    local seq = redis.call('HINCRBY', k_meta(q), 'seq', #items) - #items
    for _, item in ipairs(items) do
      seq = seq + 1
      pairs_[#pairs_ + 1] = n2s(item[1] * PRIO_SCALE + seq)
      pairs_[#pairs_ + 1] = item[2]
    end
    return pairs_
  end
  vc = tonumber(vc) or tonumber(seq) or 0
  local owners, last = {}, {}
  for _, item in ipairs(items) do
    local o = item[3]
    if o and not last[o] then last[o] = 0; owners[#owners + 1] = o end
  end
  if #owners > 0 then
    local held = redis.call('HMGET', k_fair(q), unpack(owners))
    for i, o in ipairs(owners) do last[o] = tonumber(held[i]) or 0 end
  end
  for _, item in ipairs(items) do
    local o, v = item[3], vc + 1
    if o then v = math.max(vc, last[o]) + 1; last[o] = v end
    pairs_[#pairs_ + 1] = n2s(item[1] * PRIO_SCALE + v)
    pairs_[#pairs_ + 1] = item[2]
  end
  if #owners > 0 then
    local fields = {}
    for _, o in ipairs(owners) do fields[#fields + 1] = o; fields[#fields + 1] = n2s(last[o]) end
    redis.call('HSET', k_fair(q), unpack(fields))
  end
  return pairs_
end

-- Active jobs per owner (queues with a limit per owner): add `delta` {owner = n} to the `owners` hash,
-- dropping owners that reach 0.
local function add_owner_active(q, delta)
  for o, n in pairs(delta) do
    if n ~= 0 and redis.call('HINCRBY', k_owners(q), o, n) <= 0 then redis.call('HDEL', k_owners(q), o) end
  end
end

-- The retry rule, written once (finish and claim's reaping both ask it): after failed attempt number
-- `attempt` of a job with policy head h and an error of `kind`, the delay in ms before its next attempt,
-- or nil when the job is dead (a permanent error, or no attempts left).
-- - lease_expired: 0. The job never reported, so nothing says it is failing; it recovers first (the
--   caller puts it at the front of its priority level).
-- - after_ms (a handler's retry_after) replaces the backoff.
-- - else h.b = {kind e|f, delay s, factor, max delay s, jitter}: min(max, delay * factor^(attempt-1))
--   (delay alone when fixed), scaled by 1 + jitter * (2u - 1). u in [0, 1) comes from the caller:
--   Lua's random generator is seeded alike on every script call, so it cannot jitter.
local function retry_delay_ms(h, attempt, kind, u, after_ms)
  if kind == 'permanent' or attempt >= h.m then return nil end
  if kind == 'lease_expired' then return 0 end
  if after_ms then return after_ms end
  local b = h.b
  local base = b[2]
  if b[1] == 'e' then base = b[2] * b[3] ^ math.min(attempt - 1, 64) end
  base = math.min(b[4], base)
  return math.floor(math.max(0, base * (1 + b[5] * (2 * u - 1))) * 1000)
end

-- Jobs handed back (a reaped lease, a release) wait in a band ahead of their priority level, FIFO among
-- themselves: score priority * 2^44 - 2^43 + rseq, below every priority * 2^44 + seq of the level and
-- above the level before. items = {{priority, id}, ...}.
local function requeue_front(q, items)
  if #items == 0 then return end
  local last = redis.call('HINCRBY', k_meta(q), 'rseq', #items)
  local seq = last - #items
  local pairs_ = {}
  for _, item in ipairs(items) do
    seq = seq + 1
    pairs_[#pairs_ + 1] = n2s(item[1] * PRIO_SCALE - FRONT_BAND + seq)
    pairs_[#pairs_ + 1] = item[2]
  end
  zadd(k_state(q, 'waiting'), pairs_)
end

local function push_error(e_json, err, keep)
  local list = {}
  if e_json then list = cjson.decode(e_json) end
  list[#list + 1] = err
  while #list > keep do table.remove(list, 1) end
  return cjson.encode(list)
end

-- Add a work time for a queue to the due index unless paused (ZADD LT keeps the earliest).
local function mark_due(q, at, paused)
  if not paused then redis.call('ZADD', K_DUE, 'LT', n2s(at), q) end
end

-- Recompute a queue's due time exactly from its indexes (paused queues leave the index). Waiting jobs
-- make it due now, or at `blocked_until` (a rate-limit window's end), or not at all when `full` (at its
-- concurrency limit: a lease to reap or a delayed job still does).
local function refresh_due(q, paused, now, blocked_until, full)
  if paused then redis.call('ZREM', K_DUE, q) return end
  local at = nil
  if not full and redis.call('ZCARD', k_state(q, 'waiting')) > 0 then at = blocked_until or now end
  local d = redis.call('ZRANGE', k_state(q, 'delayed'), 0, 0, 'WITHSCORES')
  if d[2] then
    local t = math.floor(tonumber(d[2]) / 10)
    if not at or t < at then at = t end
  end
  local a = redis.call('ZRANGE', k_state(q, 'active'), 0, 0, 'WITHSCORES')
  if a[2] then
    local t = tonumber(a[2])
    if not at or t < at then at = t end
  end
  if at then redis.call('ZADD', K_DUE, n2s(at), q) else redis.call('ZREM', K_DUE, q) end
end

-- Histogram bucket index (1-based; #RUN_BOUNDS + 1 is +Inf).
local function bucket(ms)
  for i, bound in ipairs(RUN_BOUNDS) do if ms <= bound then return i end end
  return #RUN_BOUNDS + 1
end

-- Add counters in a table {field = amount} to a queue's meta hash, one HINCRBY per non-zero field.
local function add_counts(q, counts)
  for field, amount in pairs(counts) do
    if amount ~= 0 then redis.call('HINCRBY', k_meta(q), field, n2s(amount)) end
  end
end

-- Per-minute throughput in 60 slots of the meta hash: tm<slot> holds the minute the slot counts.
-- `held`: that field as the caller already read it (throughput_field names it), or nil to read it here.
local function throughput_field(now) return 'tm' .. math.floor(now / 60000) % 60 end
local function add_throughput(q, now, completed, failed, held)
  if completed == 0 and failed == 0 then return end
  local minute = math.floor(now / 60000)
  local slot = minute % 60
  if held == nil then held = redis.call('HGET', k_meta(q), 'tm' .. slot) end
  if tonumber(held) == minute then
    if completed > 0 then redis.call('HINCRBY', k_meta(q), 'tc' .. slot, completed) end
    if failed > 0 then redis.call('HINCRBY', k_meta(q), 'tf' .. slot, failed) end
  else
    redis.call('HSET', k_meta(q), 'tm' .. slot, minute, 'tc' .. slot, completed, 'tf' .. slot, failed)
  end
end

-- One event entry per queue and call: space-separated ids, the new state, optional progress values.
local function add_event(q, now, state, ids, progress)
  if #ids == 0 then return end
  local fields = {'s', state, 'j', table.concat(ids, ' '), 't', n2s(now)}
  if progress then fields[#fields + 1] = 'p'; fields[#fields + 1] = table.concat(progress, ' ') end
  redis.call('XADD', k_events(q), 'MAXLEN', '~', '1000', '*', unpack(fields))
end

local function hash_to_table(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

local function del_jobs(ids)
  for i = 1, #ids, 500 do
    local part = {}
    for j = i, math.min(i + 499, #ids) do part[#part + 1] = k_job(ids[j]) end
    redis.call('DEL', unpack(part))
  end
end

-- Delete kept jobs from a terminal index: older than `cutoff` ms, and beyond `keep_count` newest.
local function trim_terminal(q, state, cutoff, keep_count)
  local key = k_state(q, state)
  local old = redis.call('ZRANGEBYSCORE', key, '-inf', n2s(cutoff), 'LIMIT', 0, 200)
  if keep_count and keep_count >= 0 then
    local extra = redis.call('ZCARD', key) - #old - keep_count
    if extra > 0 then
      local more = redis.call('ZRANGE', key, #old, #old + math.min(extra, 200) - 1)
      for _, id in ipairs(more) do old[#old + 1] = id end
    end
  end
  if #old == 0 then return 0 end
  del_jobs(old)
  zrem(key, old)
  return #old
end
