-- claim.lua: reap expired leases (a failed attempt: back to the front of waiting, or dead-letter),
-- promote due delayed jobs, then take up to n waiting jobs by priority, mark them active with a lease
-- and a fresh token. Honours the queue's rate limit and queue-wide concurrency limit, and optionally
-- takes only jobs whose timeout fits the caller (a lane): the others stay in waiting, in place.
-- An empty or paused queue costs one inner read (its due-index entry is absent or in the future).
-- KEYS: none (keys derive from the prefix; see lib.lua; the trigger keys come in ARGV).
-- ARGV[1] prefix, ARGV[2] now ms or -1, ARGV[3] queue, ARGV[4] n, ARGV[5] lease ms or -1 (each job's
-- timeout + margin), ARGV[6] lease margin ms, ARGV[7] token nonce, ARGV[8] longest job timeout s to take
-- (-1: any), ARGV[9..] trigger keys to delete when jobs are taken. The rate limit, concurrency limit and
-- failed retention are the queue's policy (lib.lua policy).
-- Returns JSON {now, j: [[id, token, lease until ms, flat job hash], ...]}.
local q = ARGV[3]
local due_at = redis.call('ZSCORE', K_DUE, q)
if not due_at then return '{"j":{}}' end
local now = now_ms()
if tonumber(due_at) > now then return cjson.encode({j = {}, now = now}) end

local n = tonumber(ARGV[4])
local lease_override = tonumber(ARGV[5])
local margin = tonumber(ARGV[6])
local nonce = ARGV[7]
local max_timeout = tonumber(ARGV[8])
-- The wait counters are read here and written back with the claim time ('lc') in one HSET at the end.
local WAIT_FIELDS = {'wait_ms'}
for i = 1, #RUN_BOUNDS + 1 do WAIT_FIELDS[#WAIT_FIELDS + 1] = 'hw' .. i end
local meta = redis.call('HMGET', k_meta(q), 'paused', 'rlw', 'rlc', 'pol', 'vc', 'seq', unpack(WAIT_FIELDS))
local W = 6 -- meta[W + i] is WAIT_FIELDS[i]
local pol = policy(meta[4])
local rate_n, rate_ms, keep_failed, limit, per_owner = pol.rn, pol.ri, pol.kf, pol.cc, pol.oc
local owner_delta = {} -- active jobs per owner gained (claimed) and lost (reaped), with a limit per owner
if meta[1] == '1' then
  redis.call('ZREM', K_DUE, q)
  return cjson.encode({j = {}, now = now})
end

-- 1. Reap expired leases (a failed attempt of kind lease_expired). With attempts left the job goes
-- back to waiting at once, at the front of its priority level, so it is taken below.
local expired = redis.call('ZRANGEBYSCORE', k_state(q, 'active'), '-inf', n2s(now), 'LIMIT', 0, 100)
if #expired > 0 then
  local recovered, recovered_ids, dead, failed_pairs = {}, {}, {}, {}
  for _, id in ipairs(expired) do
    local f = redis.call('HMGET', k_job(id), 'd', 'm', 'e')
    if f[1] then
      local h = head(f[1])
      local m = unpack_m(f[2])
      local err = {kind = 'lease_expired', message = 'lease expired before the job finished',
        attempt = m.a, at = now}
      local e = push_error(f[3], err, LIMITS.errors)
      m.k = ''
      if per_owner > 0 then owner_delta[h.o] = (owner_delta[h.o] or 0) - 1 end
      if retry_delay_ms(h, m.a, err.kind) then
        m.s, m.ra, m.sa = 'queued', now, ''
        redis.call('HSET', k_job(id), 'm', pack_m(m), 'e', e)
        recovered[#recovered + 1] = {h.p, id}
        recovered_ids[#recovered_ids + 1] = id
      else
        m.s, m.fa = 'failed', now
        redis.call('HSET', k_job(id), 'm', pack_m(m), 'e', e)
        redis.call('PEXPIRE', k_job(id), n2s(keep_failed))
        failed_pairs[#failed_pairs + 1] = n2s(now)
        failed_pairs[#failed_pairs + 1] = id
        dead[#dead + 1] = id
      end
    end
  end
  zrem(k_state(q, 'active'), expired)
  requeue_front(q, recovered)
  zadd(k_state(q, 'failed'), failed_pairs)
  add_counts(q, {retried = #recovered, failed = #dead})
  add_throughput(q, now, 0, #dead)
  add_event(q, now, 'waiting', recovered_ids)
  add_event(q, now, 'failed', dead)
end

-- 2. Promote due delayed jobs (delayed score = run-at ms * 10 + priority).
local ready = redis.call('ZRANGEBYSCORE', k_state(q, 'delayed'), '-inf', n2s(now * 10 + 9),
  'WITHSCORES', 'LIMIT', 0, 1000)
if #ready > 0 then
  local items, ids = {}, {}
  for i = 1, #ready, 2 do
    items[#items + 1] = {tonumber(ready[i + 1]) % 10, ready[i]}
    ids[#ids + 1] = ready[i]
  end
  zrem(k_state(q, 'delayed'), ids)
  zadd(k_state(q, 'waiting'), arrival_scores(q, items, per_owner, meta[5], meta[6]))
  add_event(q, now, 'waiting', ids)
end

-- 3. Rate limit: at most rate_n claims per fixed window of rate_ms.
local take = n
local window, used = nil, 0
if rate_n > 0 then
  window = now - now % rate_ms
  if tonumber(meta[2]) == window then used = tonumber(meta[3]) or 0 end
  take = math.max(0, math.min(n, rate_n - used))
end

-- 4. Concurrency: at most `limit` active jobs of the queue, across every consumer.
local running = 0
if limit > 0 then
  running = redis.call('ZCARD', k_state(q, 'active'))
  take = math.max(0, math.min(take, limit - running))
end

-- 5. Take up to `take` waiting jobs, lowest score (priority, then FIFO) first. With a timeout filter,
-- jobs too long for the caller are popped, inspected and put back with their own score, and so are the
-- jobs of an owner at its limit (at most n + 100 inspected per call), so a call that skips nothing costs
-- what an unfiltered one does.
local claimed, active_pairs, ids, skipped = {}, {}, {}, {}
local wait_sum, wait_hist = 0, {}
local budget = n + 100
local filtered = max_timeout >= 0 or per_owner > 0
local owner_active, owner_blocked = nil, false
local vc = tonumber(meta[5])
while take > #ids and budget > 0 do
  local want = math.min(take - #ids, budget)
  local popped = redis.call('ZPOPMIN', k_state(q, 'waiting'), want)
  budget = budget - #popped / 2
  for i = 1, #popped, 2 do
    local id = popped[i]
    local flat = redis.call('HGETALL', k_job(id))
    if #flat > 0 then
      local job = hash_to_table(flat)
      local h = head(job.d)
      local blocked = false
      if per_owner > 0 then
        if not owner_active then owner_active = hash_to_table(redis.call('HGETALL', k_owners(q))) end
        local active = (tonumber(owner_active[h.o]) or 0) + (owner_delta[h.o] or 0)
        blocked = active >= per_owner
        owner_blocked = owner_blocked or blocked
      end
      if blocked or (max_timeout >= 0 and h.t > max_timeout) then
        skipped[#skipped + 1] = popped[i + 1]
        skipped[#skipped + 1] = id
      else
        if per_owner > 0 then
          owner_delta[h.o] = (owner_delta[h.o] or 0) + 1
          local v = tonumber(popped[i + 1]) - h.p * PRIO_SCALE -- its place in the virtual sequence
          if v > 0 and (not vc or v > vc) then vc = v end
        end
        local m = unpack_m(job.m)
        local eligible = tonumber(m.ra) or now
        local attempt = m.a + 1
        local token = attempt .. '.' .. nonce .. (#ids + 1)
        local lease = lease_override
        if lease < 0 then lease = math.floor(h.t * 1000) + margin end
        local until_ = now + lease
        m.s, m.a, m.k, m.sa, m.fa = 'active', attempt, token, now, ''
        job.m = pack_m(m)
        redis.call('HSET', k_job(id), 'm', job.m)
        local out = {}
        for field, value in pairs(job) do out[#out + 1] = field; out[#out + 1] = value end
        claimed[#claimed + 1] = {id, token, until_, out}
        active_pairs[#active_pairs + 1] = n2s(until_)
        active_pairs[#active_pairs + 1] = id
        ids[#ids + 1] = id
        local waited = math.max(0, now - eligible)
        wait_sum = wait_sum + waited
        local b = bucket(waited)
        wait_hist[b] = (wait_hist[b] or 0) + 1
      end
    end
  end
  -- Unfiltered, one pop takes all there is; filtered, a short pop means waiting ran out.
  if not filtered or #popped / 2 < want then break end
end
add_owner_active(q, owner_delta)
zadd(k_state(q, 'waiting'), skipped)
zadd(k_state(q, 'active'), active_pairs)
add_event(q, now, 'active', ids)

-- 6. One write of the queue's meta: the claim time, the wait counters, the rate-limit window.
local fields = {'lc', n2s(now)}
if #ids > 0 then
  fields[#fields + 1] = 'wait_ms'
  fields[#fields + 1] = n2s((tonumber(meta[W + 1]) or 0) + wait_sum)
  for b, count in pairs(wait_hist) do
    fields[#fields + 1] = 'hw' .. b
    fields[#fields + 1] = n2s((tonumber(meta[W + 1 + b]) or 0) + count)
  end
end
if per_owner > 0 and vc then fields[#fields + 1] = 'vc'; fields[#fields + 1] = n2s(vc) end
local blocked_until = nil
if window then
  if #ids > 0 then
    fields[#fields + 1] = 'rlw'; fields[#fields + 1] = n2s(window)
    fields[#fields + 1] = 'rlc'; fields[#fields + 1] = n2s(used + #ids)
  end
  if used + #ids >= rate_n then blocked_until = window + rate_ms end
end
redis.call('HSET', k_meta(q), unpack(fields))
-- A queue at its concurrency limit is not due for its waiting jobs: only a lease to reap or a delayed
-- job makes it due, and a finish (which frees a slot) makes it due again. So is one whose waiting jobs
-- this claim found only of owners at their limit (a finish or a submit makes it due again).
local full = limit > 0 and running + #ids >= limit
if owner_blocked and #ids < take then full = true end
refresh_due(q, false, now, blocked_until, full)
if #ids > 0 and #ARGV >= 9 then redis.call('DEL', unpack(ARGV, 9)) end
return cjson.encode({j = claimed, now = now})
