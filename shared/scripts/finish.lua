-- finish.lua: record outcomes of claimed jobs (any queues) in one call, fenced by lease token.
-- completed -> completed; failed (permanent, or attempts exhausted) -> failed (dead-letter);
-- failed (retryable/timeout) -> delayed with backoff; retry -> delayed after the handler's delay;
-- cancelled, or any outcome of a job whose cancellation was requested -> cancelled (a late `completed`
-- too: cancel wins, and its result is dropped).
-- A token that does not match changes nothing (ok=false). A job no longer active whose token still
-- matches has already taken this outcome (an HTTP retry): ok=true, nothing changes twice.
-- Terminal jobs get a key expiry and their queue's terminal index is trimmed (retention).
-- Counters, histograms, throughput and one event per queue and state are updated once per call.
-- KEYS: none (keys derive from the prefix; see lib.lua).
-- ARGV[1] prefix, ARGV[2] now ms or -1, ARGV[3] JSON
--   {o: [{id, k: token, st: status, r: result JSON|null, e: {kind, message}|null, ra: delay ms|null,
--         p: progress|null, g: [log lines]}], u: jitter draw}
-- Retention is the queue's policy (lib.lua policy).
-- Returns JSON [[ok 0|1, state|""], ...] in outcome order.
local plan = cjson.decode(ARGV[3])
local now = now_ms()
local replies = {}
local groups = {}
local function group(q)
  local g = groups[q]
  if not g then
    g = {moved = {}, completed = {}, failed = {}, cancelled = {}, delayed = {}, c = {}, owners = {}}
    -- One read of the queue's meta per call: paused flag, this minute's throughput slot, policy.
    g.meta = redis.call('HMGET', k_meta(q), 'paused', throughput_field(now), 'pol')
    g.pol = policy(g.meta[3])
    groups[q] = g
  end
  return g
end

local function append_logs(g_json, lines)
  if not lines or #lines == 0 then return nil end
  local list = {}
  if g_json then list = cjson.decode(g_json) end
  for _, line in ipairs(lines) do list[#list + 1] = line end
  while #list > LIMITS.log_lines do table.remove(list, 1) end
  return cjson.encode(list)
end

for i, o in ipairs(plan.o) do
  local key = k_job(o.id)
  local f = redis.call('HMGET', key, 'm', 'd', 'e', 'g')
  local m = unpack_m(f[1])
  if not f[1] or m.k ~= o.k then
    replies[i] = {0, shown_state(m, now)}
  elseif m.s ~= 'active' then
    replies[i] = {1, shown_state(m, now)}
  else
    local h = head(f[2])
    local q = h.q
    local g = group(q)
    local attempt = m.a
    local status = o.st
    local fields = {}
    local logs = append_logs(f[4], o.g)
    if logs then fields[#fields + 1] = 'g'; fields[#fields + 1] = logs end
    if o.p ~= cjson.null and o.p then m.p = o.p end
    local err = nil
    if status ~= 'completed' and o.e ~= cjson.null and o.e then
      err = {kind = o.e.kind, message = o.e.message, attempt = attempt, at = now}
    end
    -- Cancel wins over any late outcome, a result included: the caller was told the job is cancelled.
    if m.x == '1' then status = 'cancelled' end
    local state, delay = status, nil
    if status == 'failed' or status == 'retry' then
      local after = nil
      if status == 'retry' and o.ra ~= cjson.null and o.ra then after = o.ra end
      delay = retry_delay_ms(h, attempt, err and err.kind, (plan.u + i * 0.6180339887) % 1, after)
      if delay then state = 'delayed' else state = 'failed' end
    end
    if err then
      fields[#fields + 1] = 'e'; fields[#fields + 1] = push_error(f[3], err, LIMITS.errors)
    end
    local ran = math.max(0, now - (tonumber(m.sa) or now))
    if state == 'delayed' then
      local at = now + delay
      m.s, m.ra, m.sa = 'queued', at, ''
      g.delayed[#g.delayed + 1] = n2s(at * 10 + h.p)
      g.delayed[#g.delayed + 1] = o.id
      g.c.retried = (g.c.retried or 0) + 1
      g.next = math.min(g.next or at, at)
    else
      m.s, m.fa = state, now
      if state == 'completed' then
        m.p = 100
        if o.r ~= cjson.null and o.r then fields[#fields + 1] = 'r'; fields[#fields + 1] = o.r end
      end
      local list = g[state]
      list[#list + 1] = n2s(now)
      list[#list + 1] = o.id
      g.c[state] = (g.c[state] or 0) + 1
    end
    fields[#fields + 1] = 'm'; fields[#fields + 1] = pack_m(m)
    redis.call('HSET', key, unpack(fields))
    if state == 'completed' then
      redis.call('PEXPIRE', key, n2s(g.pol.kc))
    elseif state == 'failed' then
      redis.call('PEXPIRE', key, n2s(g.pol.kf))
    elseif state == 'cancelled' then
      redis.call('PEXPIRE', key, n2s(g.pol.kx))
    end
    if state == 'completed' or state == 'failed' then
      g.c.run_ms = (g.c.run_ms or 0) + ran
      local b = 'hr' .. bucket(ran)
      g.c[b] = (g.c[b] or 0) + 1
    end
    g.moved[#g.moved + 1] = o.id
    if g.pol.oc > 0 then g.owners[h.o] = (g.owners[h.o] or 0) - 1 end
    g[state .. '_ids'] = g[state .. '_ids'] or {}
    table.insert(g[state .. '_ids'], o.id)
    replies[i] = {1, state}
  end
end

for q, g in pairs(groups) do
  zrem(k_state(q, 'active'), g.moved)
  add_owner_active(q, g.owners)
  zadd(k_state(q, 'completed'), g.completed)
  zadd(k_state(q, 'failed'), g.failed)
  zadd(k_state(q, 'cancelled'), g.cancelled)
  zadd(k_state(q, 'delayed'), g.delayed)
  -- Keep the due index exact (retries add work; an emptied active set removes a lease deadline).
  refresh_due(q, g.meta[1] == '1', now, nil)
  add_counts(q, g.c)
  add_throughput(q, now, g.c.completed or 0, g.c.failed or 0, g.meta[2])
  if #g.completed > 0 then trim_terminal(q, 'completed', now - g.pol.kc, g.pol.kn) end
  if #g.failed > 0 then trim_terminal(q, 'failed', now - g.pol.kf, nil) end
  if #g.cancelled > 0 then trim_terminal(q, 'cancelled', now - g.pol.kx, nil) end
  for _, state in ipairs({'completed', 'failed', 'cancelled', 'delayed'}) do
    if g[state .. '_ids'] then add_event(q, now, state, g[state .. '_ids']) end
  end
end
return cjson.encode(replies)
