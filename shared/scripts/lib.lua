-- lib.lua: helpers prepended to every script (Redis scripts cannot include files).
-- Keys: a script gets the keys of its queue first in KEYS, in shared/keys.py BLOCK order (`block` below;
-- enqueue gets one block per queue of its batch), then the others it needs (listing, idempotency); it
-- never builds a key name, so Upstash can lock exactly those keys and a Redis Cluster can route it.
-- ARGV[1] is "now" in epoch ms, or "-1" to read the Redis server's clock (the lease authority, see
-- docs/redis-schema.md); ARGV[2] the call's JSON plan (shared/scriptcalls.py types each one); the reply
-- is JSON.
-- LIMITS (errors and log lines a job keeps) and DEFAULT_POLICY come from Python, in the header shared.store
-- prepends (shared/limits.py, QueueOptions).
local unpack = unpack or table.unpack
local PRIO_SCALE = 17592186044416 -- 2^44: waiting score = priority * 2^44 + arrival ms, exact in a double
local FRONT_BAND = 8796093022208 -- 2^43: jobs handed back wait at priority * 2^44 - 2^43 + rseq
local STATES = {'waiting', 'delayed', 'active', 'completed', 'failed', 'cancelled'}
local RUN_BOUNDS = {50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000} -- ms, per bucket
local BLOCK_SIZE = 16
local TRIM_EVERY = 1000 -- ms: terminal indexes are trimmed to the retention at most this often per queue
local TRIM_MAX = 5000 -- jobs deleted per state and trim pass

-- The keys of the queue whose block starts after KEYS[base].
local function block(base)
  local Q = {jobs = KEYS[base + 1], meta = KEYS[base + 8], due = KEYS[base + 9], events = KEYS[base + 10],
    owners = KEYS[base + 11], fair = KEYS[base + 12], dedup = KEYS[base + 13], schedules = KEYS[base + 15],
    schedule_times = KEYS[base + 16], state = {}}
  for i, s in ipairs(STATES) do Q.state[s] = KEYS[base + 1 + i] end
  Q.state['waiting-children'] = KEYS[base + 14] -- flows (flow.lua)
  return Q
end

-- A queue's policy as QueueOptions.stored() wrote it to the queue's meta field 'pol' (Engine.publish_policies):
-- kc/kn keep completed ms/count, kf/kx keep failed/cancelled ms, rn/ri rate limit count/interval ms,
-- cc concurrency limit, oc limit per owner (0: none). `text` is that field as read (nil when absent: DEFAULT_POLICY).
local function policy(text)
  if not text then return DEFAULT_POLICY end
  local p = cjson.decode(text)
  for name, value in pairs(DEFAULT_POLICY) do if p[name] == nil then p[name] = value end end
  return p
end

local function now_ms(arg)
  local v = tonumber(arg)
  if v and v >= 0 then return v end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers as exact decimal text: Lua's default number formatting switches to exponents at 15 digits.
local function n2s(x) return string.format('%.0f', x) end

local function fail(code, message) return redis.error_reply('JOBQ:' .. code .. ' ' .. message) end

-- The policy head of the immutable record: Python writes q (queue), o (owner), p (priority),
-- m (max attempts), t (timeout s) and b (backoff, only when not the default) first and "y" (type)
-- right after, so the head decodes without touching the payload.
local DEFAULT_BACKOFF = {'e', 1, 2, 3600, 0.1}
local function head(d)
  local cut = string.find(d, ',"y":', 1, true)
  local h = cjson.decode(string.sub(d, 1, cut - 1) .. '}')
  if not h.b then h.b = DEFAULT_BACKOFF end
  return h
end

-- The mutable state of a job, packed in one field "<id>:m":
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

-- A job record's fields in the queue's jobs hash: the immutable JSON under the id, the rest under
-- "<id>:<part>" (m state, e errors, g logs, r result, s durable steps: STEPS below,
-- f and p a flow's links: flow.lua, u usage).
local RECORD_PARTS = {'m', 'e', 'g', 'r', 's', 'f', 'p', 'u'}
local function record_fields(id)
  local f = {id}
  for _, part in ipairs(RECORD_PARTS) do f[#f + 1] = id .. ':' .. part end
  return f
end
-- `cmd key items...` in as few calls as Lua's stack allows (4000 arguments each, an even number, so
-- field-value pairs never split).
local function batch(cmd, key, items)
  for i = 1, #items, 4000 do redis.call(cmd, key, unpack(items, i, math.min(i + 3999, #items))) end
end
local function hset_flat(key, flat) batch('HSET', key, flat) end
local function hdel_list(key, fields) batch('HDEL', key, fields) end

-- The creation time (epoch ms) in a unique id: its first 10 characters, Crockford base32 (shared/ids.py).
local CROCKFORD = {}
for i = 1, 32 do CROCKFORD[string.byte('0123456789ABCDEFGHJKMNPQRSTVWXYZ', i)] = i - 1 end
local function id_ms(id)
  local v = 0
  for i = 1, 10 do v = v * 32 + CROCKFORD[string.byte(id, i)] end
  return v
end

-- A job submitted to wait at once has no state field until it first moves: it is queued, without an
-- attempt, eligible since its creation (shared/codec.py fresh_m). That saves a field per waiting job.
local function fresh_m(id) return pack_m({s = 'queued', a = 0, ra = id_ms(id)}) end

-- Records of many jobs, one HMGET: a list of {d, m, e, g, r} in `ids` order (d false when absent; m
-- filled in for a job that has not moved since its submit).
local function records(Q, ids)
  local out = {}
  if #ids == 0 then return out end
  local fields = {}
  for _, id in ipairs(ids) do for _, f in ipairs(record_fields(id)) do fields[#fields + 1] = f end end
  local n = #RECORD_PARTS + 1
  for i = 1, #fields, 4000 do
    local last = math.min(i + 3999, #fields)
    local got = redis.call('HMGET', Q.jobs, unpack(fields, i, last))
    for j = 0, last - i do
      local k = i + j - 1 -- 0-based position in `fields`
      local r = math.floor(k / n) + 1
      out[r] = out[r] or {}
      out[r][k % n + 1] = got[j + 1]
    end
  end
  for r, rec in ipairs(out) do
    if rec[1] and not rec[2] then rec[2] = fresh_m(ids[r]) end
  end
  return out
end

-- A record as the flat field list the caller decodes (Python codec.decode_job): d, m, e, g, r, s, f, p,
-- u present.
local function flat_record(rec)
  local out = {}
  local names = {'d', 'm', 'e', 'g', 'r', 's', 'f', 'p', 'u'}
  for i, name in ipairs(names) do
    if rec[i] then out[#out + 1] = name; out[#out + 1] = rec[i] end
  end
  return out
end

-- Scores and members for ZADD, flattened: {score1, member1, score2, member2, ...}.
local function zadd(key, pairs_) batch('ZADD', key, pairs_) end

local function zrem(key, ids) if #ids > 0 then batch('ZREM', key, ids) end end

-- The queue's meta hash, read once per call and written once: `meta(Q, now)` reads every field a script
-- may need in one HMGET (the first time in a call; parts of a composed script share it), `mset`/`madd`
-- stage changes, and `commit()` writes them in one HSET, moves the due key when the due time changed and
-- writes the call's events as one stream entry.
local META_FIELDS = {'paused', 'pol', 'du', 'vc', 'rseq', 'lc', 'rlw', 'rlc', 'nd', 'nr', 'ns', 'tr', 'wait_ms',
  'completed', 'failed', 'retried', 'cancelled', 'run_ms', 'ch', 'cm', 'ui', 'uo', 'uc'}
for _, h in ipairs({'hw', 'hr'}) do
  for i = 1, #RUN_BOUNDS + 1 do META_FIELDS[#META_FIELDS + 1] = h .. i end
end
for _, s in ipairs({'completed', 'failed', 'cancelled'}) do META_FIELDS[#META_FIELDS + 1] = 'tt:' .. s end
local SESSIONS, SESSION_ORDER = {}, {}
local WRITES, WRITE_ORDER = {}, {} -- record fields staged per jobs hash: one HSET each at commit

-- Stage record fields (flat "field value" pairs) of a queue's jobs hash for the call's one write.
-- A part of a composed call that must read what it wrote before the call ends flushes first (`flush`).
local function stage(Q, flat)
  if #flat == 0 then return end
  local list = WRITES[Q.jobs]
  if not list then list = {}; WRITES[Q.jobs] = list; WRITE_ORDER[#WRITE_ORDER + 1] = Q.jobs end
  for _, v in ipairs(flat) do list[#list + 1] = v end
end
local function flush_writes()
  for _, key in ipairs(WRITE_ORDER) do hset_flat(key, WRITES[key]) end
  WRITES, WRITE_ORDER = {}, {}
end

local function meta(Q, now)
  local s = SESSIONS[Q.meta]
  if s then return s end
  local slot = math.floor(now / 60000) % 60
  local fields = {unpack(META_FIELDS)}
  for _, f in ipairs({'tm', 'tc', 'tf'}) do fields[#fields + 1] = f .. slot end
  local got = redis.call('HMGET', Q.meta, unpack(fields))
  local v = {}
  for i, f in ipairs(fields) do
    if got[i] and got[i] ~= '' then v[f] = got[i] end
  end
  s = {Q = Q, v = v, set = {}, now = now, slot = slot, pol = policy(v.pol), due = v.du, events = {}, order = {}}
  SESSIONS[Q.meta] = s
  SESSION_ORDER[#SESSION_ORDER + 1] = s
  return s
end

local function mset(s, field, value)
  s.v[field] = value
  s.set[field] = value or ''
end
local function mnum(s, field) return tonumber(s.v[field]) or 0 end
local function madd(s, field, n) if n and n ~= 0 then mset(s, field, n2s(mnum(s, field) + n)) end end
-- Keep the lower bound `field` ('nd' next delayed run-at, 'nr' next lease deadline) at or below `at`.
local function mlower(s, field, at)
  local held = tonumber(s.v[field])
  if not held or at < held then mset(s, field, n2s(at)) end
end

-- Collect a state change for the call's one stream entry: {t: now, <state>: ids, p: progress values}.
local function emit(s, state, ids, progress)
  if #ids == 0 then return end
  local e = s.events[state]
  if not e then e = {ids = {}, p = {}}; s.events[state] = e; s.order[#s.order + 1] = state end
  for _, id in ipairs(ids) do e.ids[#e.ids + 1] = id end
  if progress then for _, p in ipairs(progress) do e.p[#e.p + 1] = p end end
end

-- Recompute the due time from what the call knows: `waiting` (the queue has waiting jobs), the lower
-- bounds 'nd' (earliest delayed run-at) and 'nr' (earliest lease deadline: a claim that finds nothing at
-- that time sets them exactly), 'ns' (the next schedule slot, exact), a rate window's end
-- `blocked_until`, and `full` (at its concurrency limit, or only owners at their limit wait: only a
-- lease to reap, a delayed job or a schedule makes it due).
local function refresh_due(s, waiting, blocked_until, full)
  if s.v.paused == '1' then s.due = nil return end
  local at = nil
  if waiting and not full then at = blocked_until or s.now end
  for _, f in ipairs({'nd', 'nr', 'ns'}) do
    local t = tonumber(s.v[f])
    if t and (not at or t < at) then at = t end
  end
  if at then s.due = n2s(at) else s.due = nil end
end

-- The queue's next schedule slot 'ns', exactly, after a call that changed its schedules' times.
local function settle_schedules(s)
  mset(s, 'ns', redis.call('ZRANGE', s.Q.schedule_times, 0, 0, 'WITHSCORES')[2])
end

-- Make the queue due by `at` at the latest (new work), unless paused.
local function due_by(s, at)
  if s.v.paused == '1' then return end
  local held = tonumber(s.due)
  if not held or at < held then s.due = n2s(at) end
end

-- The earliest lease deadline 'nr', exactly, after a call that ended leases (finish) and took none:
-- otherwise a finished job's lease would still make the queue due (a consumer woken for nothing). A call
-- that also took jobs keeps the lower bound: a claim that reaches it looks once and sets it exactly.
local function settle_leases(s)
  local first = redis.call('ZRANGE', s.Q.state.active, 0, 0, 'WITHSCORES')
  mset(s, 'nr', first[2])
  -- Due now stays due now (jobs may wait); a later due time came from a lease or a delayed job.
  local held = tonumber(s.due)
  local waiting = s.waiting
  if waiting == nil then waiting = held ~= nil and held <= s.now end
  refresh_due(s, waiting, s.blocked_until, s.full)
end

local function commit()
  flush_writes()
  for _, s in ipairs(SESSION_ORDER) do
    local Q = s.Q
    if s.leases_ended and not s.took then settle_leases(s) end
    if s.due ~= s.v.du then
      if s.due then redis.call('SET', Q.due, s.due) else redis.call('DEL', Q.due) end
      mset(s, 'du', s.due)
    end
    local flat = {}
    for field, value in pairs(s.set) do flat[#flat + 1] = field; flat[#flat + 1] = value end
    if #flat > 0 then redis.call('HSET', Q.meta, unpack(flat)) end
    if #s.order > 0 then
      local fields = {'t', n2s(s.now)}
      for _, state in ipairs(s.order) do
        local e = s.events[state]
        fields[#fields + 1] = state; fields[#fields + 1] = table.concat(e.ids, ' ')
        if #e.p > 0 then fields[#fields + 1] = 'p'; fields[#fields + 1] = table.concat(e.p, ' ') end
      end
      redis.call('XADD', Q.events, 'MAXLEN', '~', '1000', '*', unpack(fields))
    end
  end
  SESSIONS, SESSION_ORDER = {}, {}
end

-- Consumer lanes asked for a run of this queue: meta 'tr' = "lane=expiry ms ...". A submit asks a lane
-- unless a request is pending (not expired), a claim that takes jobs clears its lanes.
local function triggers(s)
  local t = {}
  for lane, at in string.gmatch(s.v.tr or '', '(%S+)=(%d+)') do t[lane] = tonumber(at) end
  return t
end
local function set_triggers(s, t)
  local out = {}
  for lane, at in pairs(t) do if at > s.now then out[#out + 1] = lane .. '=' .. n2s(at) end end
  table.sort(out)
  mset(s, 'tr', table.concat(out, ' '))
end

-- Waiting scores for jobs arriving in waiting (submitted, promoted, re-run): priority * 2^44 + arrival.
-- FIFO by arrival time (ties: by id, which is time-ordered too); in a queue with a limit per owner
-- (`oc`), a fair share instead: each owner's job takes the next of that owner's virtual sequence (`fair`
-- hash), started at the queue's virtual clock `vc` (the furthest position claimed), so one owner's
-- backlog cannot delay another owner's first job: it lands beside the jobs being claimed now, not behind
-- the backlog. items = {{priority, id, owner}} (owner nil when unknown: the clock's next). Returns
-- flattened ZADD pairs.
local function arrival_scores(s, items)
  local pairs_ = {}
  if s.pol.oc == 0 then
    for _, item in ipairs(items) do
      pairs_[#pairs_ + 1] = n2s(item[1] * PRIO_SCALE + s.now)
      pairs_[#pairs_ + 1] = item[2]
    end
    return pairs_
  end
  local vc = tonumber(s.v.vc) or s.now -- a queue turned fair goes on after its FIFO arrivals
  local owners, last = {}, {}
  for _, item in ipairs(items) do
    local o = item[3]
    if o and not last[o] then last[o] = 0; owners[#owners + 1] = o end
  end
  if #owners > 0 then
    local held = redis.call('HMGET', s.Q.fair, unpack(owners))
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
    redis.call('HSET', s.Q.fair, unpack(fields))
  end
  return pairs_
end

-- Active jobs per owner (queues with a limit per owner): add `delta` {owner = n} to the `owners` hash,
-- dropping owners that reach 0.
local function add_owner_active(Q, delta)
  for o, n in pairs(delta) do
    if n ~= 0 and redis.call('HINCRBY', Q.owners, o, n) <= 0 then redis.call('HDEL', Q.owners, o) end
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
-- themselves: score priority * 2^44 - 2^43 + rseq, below every priority * 2^44 + arrival of the level and
-- above the level before. items = {{priority, id}, ...}.
local function requeue_front(s, items)
  if #items == 0 then return end
  local seq = mnum(s, 'rseq')
  local pairs_ = {}
  for _, item in ipairs(items) do
    seq = seq + 1
    pairs_[#pairs_ + 1] = n2s(item[1] * PRIO_SCALE - FRONT_BAND + seq)
    pairs_[#pairs_ + 1] = item[2]
  end
  mset(s, 'rseq', n2s(seq))
  zadd(s.Q.state.waiting, pairs_)
end

local function push_error(e_json, err, keep)
  local list = {}
  if e_json then list = cjson.decode(e_json) end
  list[#list + 1] = err
  while #list > keep do table.remove(list, 1) end
  return cjson.encode(list)
end

local function append_logs(g_json, lines)
  if not lines or #lines == 0 then return nil end
  local list = {}
  if g_json then list = cjson.decode(g_json) end
  for _, line in ipairs(lines) do list[#list + 1] = line end
  while #list > LIMITS.log_lines do table.remove(list, 1) end
  return cjson.encode(list)
end

-- Histogram bucket index (1-based; #RUN_BOUNDS + 1 is +Inf).
local function bucket(ms)
  for i, bound in ipairs(RUN_BOUNDS) do if ms <= bound then return i end end
  return #RUN_BOUNDS + 1
end

-- Per-minute throughput in 60 slots of the meta hash: tm<slot> holds the minute the slot counts.
local function add_throughput(s, completed, failed)
  if completed == 0 and failed == 0 then return end
  local minute = math.floor(s.now / 60000)
  local slot = s.slot
  if tonumber(s.v['tm' .. slot]) == minute then
    madd(s, 'tc' .. slot, completed)
    madd(s, 'tf' .. slot, failed)
  else
    mset(s, 'tm' .. slot, n2s(minute))
    mset(s, 'tc' .. slot, n2s(completed))
    mset(s, 'tf' .. slot, n2s(failed))
  end
end

-- Delete jobs' records (every part) from the queue's jobs hash.
local function del_records(Q, ids)
  local fields = {}
  for _, id in ipairs(ids) do for _, f in ipairs(record_fields(id)) do fields[#fields + 1] = f end end
  if #fields > 0 then hdel_list(Q.jobs, fields) end
end

-- Completion callbacks and hooks (shared/callbacks.py): a job whose head has `n` (a callback URL `cb`,
-- or hooks on its type) gets, when it reaches a final state, a delivery job of type
-- LIMITS.callback_type in its own queue, written by the same call that records the final state: a
-- consumer that dies after that call loses no callback, and one that dies during the delivery leaves it
-- to be reaped and retried. Its id is the finish time (at least the job's creation time + 1 ms, so never
-- the job's own id) and the job's random part; its owner is LIMITS.callback_owner (no user's); its
-- payload names the job, the final state and the URL.
-- Costs the ZADD into waiting (its record rides in the call's one HSET, its event in the call's one
-- XADD). Returns whether it wrote one.
local CROCKFORD_DIGITS = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
local function notify(s, id, h, state)
  if not h.n then return false end
  local at, prefix = math.max(s.now, id_ms(id) + 1), {}
  for i = 10, 1, -1 do
    local digit = at % 32
    prefix[i] = string.sub(CROCKFORD_DIGITS, digit + 1, digit + 1)
    at = math.floor(at / 32)
  end
  local cid = table.concat(prefix) .. string.sub(id, 11)
  local x = {job = id .. '.' .. h.q, state = state, url = h.cb}
  local d = '{"q":' .. cjson.encode(h.q) .. ',"o":"' .. LIMITS.callback_owner .. '","p":' .. n2s(h.p) ..
    ',"m":' .. LIMITS.callback_attempts .. ',"t":' .. LIMITS.callback_timeout ..
    ',"y":"' .. LIMITS.callback_type .. '","x":' .. cjson.encode(x) .. '}'
  stage(s.Q, {cid, d})
  zadd(s.Q.state.waiting, arrival_scores(s, {{h.p, cid, LIMITS.callback_owner}}))
  due_by(s, s.now)
  emit(s, 'waiting', {cid})
  return true
end

-- Retention: delete kept jobs of a terminal index older than `cutoff` ms and beyond `keep_count` newest,
-- at most TRIM_MAX per state and pass, and at most one pass per TRIM_EVERY ms per queue and state (meta
-- 'tt:<state>'), so a finish costs no trim commands most of the time and a pass keeps up with any rate a
-- queue reaches. Returns how many were deleted.
local function trim_terminal(s, state, cutoff, keep_count)
  if mnum(s, 'tt:' .. state) > s.now then return 0 end
  mset(s, 'tt:' .. state, n2s(s.now + TRIM_EVERY))
  local key = s.Q.state[state]
  local old = redis.call('ZRANGEBYSCORE', key, '-inf', n2s(cutoff), 'LIMIT', 0, TRIM_MAX)
  if keep_count and keep_count >= 0 then
    local extra = redis.call('ZCARD', key) - #old - keep_count
    if extra > 0 and #old < TRIM_MAX then
      local more = redis.call('ZRANGE', key, #old, #old + math.min(extra, TRIM_MAX - #old) - 1)
      for _, id in ipairs(more) do old[#old + 1] = id end
    end
  end
  if #old == 0 then return 0 end
  del_records(s.Q, old)
  zrem(key, old)
  return #old
end

-- Retention of every terminal state the call added to (trim_terminal).
local function apply_retention(s, added)
  local p = s.pol
  if added.completed then trim_terminal(s, 'completed', s.now - p.kc, p.kn) end
  if added.failed then trim_terminal(s, 'failed', s.now - p.kf, nil) end
  if added.cancelled then trim_terminal(s, 'cancelled', s.now - p.kx, nil) end
end

-- Durable steps, the record part "<id>:s": one line per recorded step, `<name JSON>\t<result JSON>\n`,
-- in the order recorded. Compact JSON never holds a raw tab or newline, so a step is found by its name
-- without decoding any result (shared/codec.py decode_steps reads it back).
local function has_step(steps, name_json)
  return string.find('\n' .. (steps or ''), '\n' .. name_json .. '\t', 1, true) ~= nil
end
local function step_count(steps)
  local _, n = string.gsub(steps or '', '\n', '')
  return n
end

-- Singleton and debounce keys held in a queue: its `dedup` hash, field '<kind>:<digest>' ('s'
-- singleton, 'd' debounce; the digest of owner and key sits in the job's policy head as `sg` / `db`)
-- -> the unique id of the job holding it. Release the holds of `kind` of jobs leaving the state that
-- holds them, items = {{h, id}}: only a field still naming the job (a job re-run by hand holds none).
local function release_holds(Q, kind, items)
  local fields, ids = {}, {}
  for _, item in ipairs(items) do
    local digest = item[1][kind == 's' and 'sg' or 'db']
    if digest then fields[#fields + 1] = kind .. ':' .. digest; ids[#ids + 1] = item[2] end
  end
  if #fields == 0 then return end
  local held = redis.call('HMGET', Q.dedup, unpack(fields))
  local gone = {}
  for i, f in ipairs(fields) do if held[i] == ids[i] then gone[#gone + 1] = f end end
  if #gone > 0 then redis.call('HDEL', Q.dedup, unpack(gone)) end
end
