-- claim.lua: reap expired leases (a failed attempt: back to the front of waiting, or dead-letter),
-- promote due delayed jobs, then take up to n waiting jobs by priority, mark them active with a lease
-- and a fresh token. Honours the queue's rate limit and queue-wide concurrency limit, and optionally
-- takes only jobs whose timeout fits the caller (a lane): the others stay in waiting, in place.
-- A job leaving waiting releases its debounce key (a later submit starts a new window); a reaped job
-- out of attempts releases its singleton key (lib.lua release_holds).
-- A queue that is not due (nothing waiting, no delayed job or lease deadline reached, or paused) costs
-- one inner read: its meta, whose due mirror says so.
-- A reaped job that dies tells the jobs waiting on it (flow.lua), in this call.
-- KEYS: the queue's block (lib.lua block), then the blocks of other queues of its flows (plan.fq).
-- ARGV[1] now ms or -1, ARGV[2] JSON plan (shared/scriptcalls.py ClaimPlan): {fq, n, lease: ms or -1 (each
-- job's timeout + margin), margin: lease margin ms, nonce: token nonce, max_timeout: longest job timeout
-- s to take (-1: any), lanes: the consumer lanes whose pending trigger a claim that takes jobs clears
-- (["*"]: every lane)}. The rate limit, concurrency limit and failed retention are the queue's policy
-- (lib.lua policy).
-- Returns JSON {now, j: [[unique id, token, lease until ms, flat record], ...], sd: [records of up to
-- 20 schedules whose slot has come (JSON text; absent when none): the caller fires them (fire.lua)]}.
local now = now_ms(ARGV[1])
local Q = block(0)
local s = meta(Q, now)
local due_at = tonumber(s.due)
if s.v.paused == '1' or not due_at or due_at > now then
  commit()
  return cjson.encode({j = {}, now = now})
end

local plan = cjson.decode(ARGV[2])
local self_queue = flow_blocks(plan.fq)
-- 0. Schedules whose slot has come ('ns' is the earliest): their records go back to the caller, which
-- computes their next slots (cron needs Python) and fires them.
local schedules_due = nil
local ns = tonumber(s.v.ns)
if ns and ns <= now then
  local due_ids = redis.call('ZRANGEBYSCORE', Q.schedule_times, '-inf', n2s(now), 'LIMIT', 0, 20)
  if #due_ids > 0 then schedules_due = redis.call('HMGET', Q.schedules, unpack(due_ids)) end
end
local n, lease_override, margin, nonce = plan.n, plan.lease, plan.margin, plan.nonce
local max_timeout = plan.max_timeout
local pol = s.pol
local rate_n, rate_ms, limit, per_owner = pol.rn, pol.ri, pol.cc, pol.oc
local owner_delta = {} -- active jobs per owner gained (claimed) and lost (reaped), with a limit per owner
local writes = {} -- record fields to write, flat, in one HSET at the end
local added = {}

-- 1. Reap expired leases (a failed attempt of kind lease_expired), once the earliest lease deadline
-- ('nr', a lower bound) has passed. With attempts left the job goes back to waiting at once, at the
-- front of its priority level, so it is taken below.
local nr = tonumber(s.v.nr)
if nr and nr <= now then
  local expired = redis.call('ZRANGEBYSCORE', Q.state.active, '-inf', n2s(now), 'LIMIT', 0, 100)
  if #expired > 0 then
    local recovered, recovered_ids, dead, failed_pairs, dead_holds = {}, {}, {}, {}, {}
    local recs = records(Q, expired)
    for i, id in ipairs(expired) do
      local rec = recs[i]
      if rec[1] then
        local h = head(rec[1])
        local m = unpack_m(rec[2])
        local err = {kind = 'lease_expired', message = 'lease expired before the job finished',
          attempt = m.a, at = now}
        writes[#writes + 1] = id .. ':e'; writes[#writes + 1] = push_error(rec[3], err, LIMITS.errors)
        m.k = ''
        if per_owner > 0 then owner_delta[h.o] = (owner_delta[h.o] or 0) - 1 end
        if retry_delay_ms(h, m.a, err.kind) then
          m.s, m.ra, m.sa = 'queued', now, ''
          recovered[#recovered + 1] = {h.p, id}
          recovered_ids[#recovered_ids + 1] = id
        else
          m.s, m.fa = 'failed', now
          notify(s, id, h, 'failed')
          failed_pairs[#failed_pairs + 1] = n2s(now)
          failed_pairs[#failed_pairs + 1] = id
          dead[#dead + 1] = id
          dead_holds[#dead_holds + 1] = {h, id}
          if rec[8] then flow_notify(id .. '.' .. self_queue, 'failed', cjson.decode(rec[8])) end
        end
        writes[#writes + 1] = id .. ':m'; writes[#writes + 1] = pack_m(m)
      end
    end
    flow_run(now)
    local missing = flow_missing()
    if missing then return missing end
    stage(Q, writes)
    writes = {}
    flush_writes() -- now, so the jobs taken below read their records as reaped
    zrem(Q.state.active, expired)
    requeue_front(s, recovered)
    zadd(Q.state.failed, failed_pairs)
    release_holds(Q, 's', dead_holds)
    madd(s, 'retried', #recovered)
    madd(s, 'failed', #dead)
    add_throughput(s, 0, #dead)
    emit(s, 'waiting', recovered_ids)
    emit(s, 'failed', dead)
    if #dead > 0 then added.failed = true end
  end
  local first = redis.call('ZRANGE', Q.state.active, 0, 0, 'WITHSCORES')
  mset(s, 'nr', first[2])
end

-- 2. Promote due delayed jobs (delayed score = run-at ms * 10 + priority), once the earliest run-at
-- ('nd', a lower bound) has come.
local nd = tonumber(s.v.nd)
if nd and nd <= now then
  local ready = redis.call('ZRANGEBYSCORE', Q.state.delayed, '-inf', n2s(now * 10 + 9),
    'WITHSCORES', 'LIMIT', 0, 1000)
  if #ready > 0 then
    local items, ids = {}, {}
    for i = 1, #ready, 2 do
      items[#items + 1] = {tonumber(ready[i + 1]) % 10, ready[i]}
      ids[#ids + 1] = ready[i]
    end
    zrem(Q.state.delayed, ids)
    zadd(Q.state.waiting, arrival_scores(s, items))
    emit(s, 'waiting', ids)
  end
  local first = redis.call('ZRANGE', Q.state.delayed, 0, 0, 'WITHSCORES')
  if first[2] then mset(s, 'nd', n2s(math.floor(tonumber(first[2]) / 10))) else mset(s, 'nd', nil) end
end

-- 3. Rate limit: at most rate_n claims per fixed window of rate_ms.
local take = n
local window, used = nil, 0
if rate_n > 0 then
  window = now - now % rate_ms
  if tonumber(s.v.rlw) == window then used = mnum(s, 'rlc') end
  take = math.max(0, math.min(n, rate_n - used))
end

-- 4. Concurrency: at most `limit` active jobs of the queue, across every consumer.
local running = 0
if limit > 0 then
  running = redis.call('ZCARD', Q.state.active)
  take = math.max(0, math.min(take, limit - running))
end

-- 5. Take up to `take` waiting jobs, lowest score (priority, then FIFO) first. With a timeout filter,
-- jobs too long for the caller are popped, inspected and put back with their own score, and so are the
-- jobs of an owner at its limit (at most n + 100 inspected per call), so a call that skips nothing costs
-- what an unfiltered one does.
local claimed, active_pairs, ids, skipped, debounced = {}, {}, {}, {}, {}
local wait_sum = 0
local budget = n + 100
local filtered = max_timeout >= 0 or per_owner > 0
local owner_active, owner_blocked = nil, false
local vc = tonumber(s.v.vc)
local exhausted = false -- a pop came back short: nothing else waits (but what was skipped)
local popped_any = false
while take > #ids and budget > 0 do
  local want = math.min(take - #ids, budget)
  local popped = redis.call('ZPOPMIN', Q.state.waiting, want)
  popped_any = true
  budget = budget - #popped / 2
  local pids = {}
  for i = 1, #popped, 2 do pids[#pids + 1] = popped[i] end
  local recs = records(Q, pids)
  for i, id in ipairs(pids) do
    local rec = recs[i]
    local score = popped[2 * i]
    if rec[1] then
      local h = head(rec[1])
      local blocked = false
      if per_owner > 0 then
        if not owner_active then
          owner_active = {}
          local flat = redis.call('HGETALL', Q.owners)
          for j = 1, #flat, 2 do owner_active[flat[j]] = tonumber(flat[j + 1]) end
        end
        local active = (owner_active[h.o] or 0) + (owner_delta[h.o] or 0)
        blocked = active >= per_owner
        owner_blocked = owner_blocked or blocked
      end
      if blocked or (max_timeout >= 0 and h.t > max_timeout) then
        skipped[#skipped + 1] = score
        skipped[#skipped + 1] = id
      else
        if per_owner > 0 then
          owner_delta[h.o] = (owner_delta[h.o] or 0) + 1
          local v = tonumber(score) - h.p * PRIO_SCALE -- its place in the virtual sequence
          if v > 0 and (not vc or v > vc) then vc = v end
        end
        local m = unpack_m(rec[2])
        local eligible = tonumber(m.ra) or now
        local attempt = m.a + 1
        local token = attempt .. '.' .. nonce .. (#ids + 1)
        local lease = lease_override
        if lease < 0 then lease = math.floor(h.t * 1000) + margin end
        local until_ = now + lease
        m.s, m.a, m.k, m.sa, m.fa = 'active', attempt, token, now, ''
        rec[2] = pack_m(m)
        writes[#writes + 1] = id .. ':m'; writes[#writes + 1] = rec[2]
        claimed[#claimed + 1] = {id, token, until_, flat_record(rec)}
        active_pairs[#active_pairs + 1] = n2s(until_)
        active_pairs[#active_pairs + 1] = id
        ids[#ids + 1] = id
        if h.db then debounced[#debounced + 1] = {h, id} end
        mlower(s, 'nr', until_)
        local waited = math.max(0, now - eligible)
        wait_sum = wait_sum + waited
        madd(s, 'hw' .. bucket(waited), 1)
      end
    end
  end
  if #popped / 2 < want then exhausted = true end
  -- Unfiltered, one pop takes all there is; filtered, a short pop means waiting ran out.
  if not filtered or exhausted then break end
end
if per_owner > 0 then add_owner_active(Q, owner_delta) end
zadd(Q.state.waiting, skipped)
zadd(Q.state.active, active_pairs)
release_holds(Q, 'd', debounced)
stage(Q, writes)
emit(s, 'active', ids)
s.took = #ids > 0

-- 6. The queue's bookkeeping, written with its meta at commit: claim time, wait counters, rate window,
-- virtual clock, the triggers this claim answered, and its due time.
mset(s, 'lc', n2s(now))
madd(s, 'wait_ms', wait_sum)
if per_owner > 0 and vc then mset(s, 'vc', n2s(vc)) end
local blocked_until = nil
if window then
  if #ids > 0 then
    mset(s, 'rlw', n2s(window))
    mset(s, 'rlc', n2s(used + #ids))
  end
  if used + #ids >= rate_n then blocked_until = window + rate_ms end
end
if #ids > 0 and #plan.lanes > 0 then
  local pending = triggers(s)
  for _, lane in ipairs(plan.lanes) do
    if lane == '*' then pending = {} else pending[lane] = nil end
  end
  set_triggers(s, pending)
end
-- Whether jobs still wait: a short pop says no (but for those skipped); with no pop at all, ask.
local waiting_left = #skipped > 0 or (popped_any and not exhausted)
if not popped_any then waiting_left = redis.call('ZCARD', Q.state.waiting) > 0 end
-- A queue at its concurrency limit is not due for its waiting jobs: only a lease to reap or a delayed
-- job makes it due, and a finish (which frees a slot) makes it due again. So is one whose waiting jobs
-- this claim found only of owners at their limit (a finish or a submit makes it due again).
local full = limit > 0 and running + #ids >= limit
if owner_blocked and #ids < take then full = true end
s.waiting, s.blocked_until, s.full = waiting_left, blocked_until, full
refresh_due(s, waiting_left, blocked_until, full)
apply_retention(s, added)
flow_apply(now)
commit()
return cjson.encode({j = claimed, now = now, sd = schedules_due})
