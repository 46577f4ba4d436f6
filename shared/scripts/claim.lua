-- claim.lua: reap expired leases (a failed attempt: retry or dead-letter), promote due delayed jobs
-- (reap first, so a retry due now is promoted in the same call), then take up to n waiting jobs by priority, mark them active with a lease and a fresh token.
-- An empty or paused queue costs one inner read (its due-index entry is absent or in the future).
-- KEYS: none (keys derive from the prefix; see lib.lua).
-- ARGV[1] prefix, ARGV[2] now ms or -1, ARGV[3] queue, ARGV[4] n, ARGV[5] lease ms or -1 (each job's
-- timeout + margin), ARGV[6] lease margin ms, ARGV[7] rate-limit count (0: none), ARGV[8] rate-limit
-- interval ms, ARGV[9] token nonce, ARGV[10] failed retention ms, ARGV[11] jitter draw u in [0, 1).
-- Returns JSON {now, j: [[id, token, lease until ms, flat job hash], ...]}.
local q = ARGV[3]
local due_at = redis.call('ZSCORE', K_DUE, q)
if not due_at then return '{"j":{}}' end
local now = now_ms()
if tonumber(due_at) > now then return cjson.encode({j = {}, now = now}) end

local n = tonumber(ARGV[4])
local lease_override = tonumber(ARGV[5])
local margin = tonumber(ARGV[6])
local rate_n, rate_ms = tonumber(ARGV[7]), tonumber(ARGV[8])
local nonce = ARGV[9]
local keep_failed = tonumber(ARGV[10])
local u = tonumber(ARGV[11])
local meta = redis.call('HMGET', k_meta(q), 'paused', 'rlw', 'rlc')
if meta[1] == '1' then
  redis.call('ZREM', K_DUE, q)
  return cjson.encode({j = {}, now = now})
end

-- 1. Reap expired leases first (the attempt failed with kind lease_expired), so a retry due at
-- once is promoted below.
local expired = redis.call('ZRANGEBYSCORE', k_state(q, 'active'), '-inf', n2s(now), 'LIMIT', 0, 100)
if #expired > 0 then
  local retried, dead, delayed_pairs, failed_pairs = {}, {}, {}, {}
  for i, id in ipairs(expired) do
    local f = redis.call('HMGET', k_job(id), 'd', 'm', 'e')
    if f[1] then
      local h = head(f[1])
      local m = unpack_m(f[2])
      local attempt = m.a
      local err = {kind = 'lease_expired', message = 'lease expired before the job finished',
        attempt = attempt, at = now}
      local e = push_error(f[3], err, 5)
      m.k = ''
      if attempt < h.m then
        local draw = (u + i * 0.6180339887) % 1
        local at = now + retry_delay_ms(h.b, attempt, draw)
        m.s, m.ra, m.sa = 'queued', at, ''
        redis.call('HSET', k_job(id), 'm', pack_m(m), 'e', e)
        delayed_pairs[#delayed_pairs + 1] = n2s(at * 10 + h.p)
        delayed_pairs[#delayed_pairs + 1] = id
        retried[#retried + 1] = id
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
  zadd(k_state(q, 'delayed'), delayed_pairs)
  zadd(k_state(q, 'failed'), failed_pairs)
  add_counts(q, {retried = #retried, failed = #dead})
  add_throughput(q, now, 0, #dead)
  add_event(q, now, 'delayed', retried)
  add_event(q, now, 'failed', dead)
end

-- 2. Promote due delayed jobs (delayed score = run-at ms * 10 + priority).
local ready = redis.call('ZRANGEBYSCORE', k_state(q, 'delayed'), '-inf', n2s(now * 10 + 9),
  'WITHSCORES', 'LIMIT', 0, 1000)
if #ready > 0 then
  local last = redis.call('HINCRBY', k_meta(q), 'seq', #ready / 2)
  local seq = last - #ready / 2
  local pairs_, ids = {}, {}
  for i = 1, #ready, 2 do
    local id, prio = ready[i], tonumber(ready[i + 1]) % 10
    seq = seq + 1
    pairs_[#pairs_ + 1] = n2s(prio * PRIO_SCALE + seq)
    pairs_[#pairs_ + 1] = id
    ids[#ids + 1] = id
  end
  zrem(k_state(q, 'delayed'), ids)
  zadd(k_state(q, 'waiting'), pairs_)
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

-- 4. Take up to `take` waiting jobs, lowest score (priority, then FIFO) first.
local claimed, active_pairs, ids = {}, {}, {}
local wait_sum, wait_hist = 0, {}
if take > 0 then
  local popped = redis.call('ZPOPMIN', k_state(q, 'waiting'), take)
  for i = 1, #popped, 2 do
    local id = popped[i]
    local flat = redis.call('HGETALL', k_job(id))
    if #flat > 0 then
      local job = hash_to_table(flat)
      local h = head(job.d)
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
      local b = 'hw' .. bucket(waited)
      wait_hist[b] = (wait_hist[b] or 0) + 1
    end
  end
  zadd(k_state(q, 'active'), active_pairs)
  wait_hist.wait_ms = wait_sum
  add_counts(q, wait_hist)
  add_event(q, now, 'active', ids)
end

local blocked_until = nil
if window then
  if #ids > 0 then redis.call('HSET', k_meta(q), 'rlw', n2s(window), 'rlc', used + #ids) end
  if used + #ids >= rate_n then blocked_until = window + rate_ms end
end
refresh_due(q, false, now, blocked_until)
if #ids > 0 then redis.call('DEL', K_TRIGGER) end
return cjson.encode({j = claimed, now = now})
