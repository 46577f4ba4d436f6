-- finish.lua: record outcomes of claimed jobs of one queue in one call, fenced by lease token.
-- completed -> completed; failed (permanent, or attempts exhausted) -> failed (dead-letter);
-- failed (retryable/timeout) -> delayed with backoff; retry -> delayed after the handler's delay;
-- cancelled, or any outcome of a job whose cancellation was requested -> cancelled (a late `completed`
-- too: cancel wins, and its result is dropped); sleep (JobContext.sleep) -> delayed until the wake
-- time, the attempt given back and the sleep recorded as a step (a resumed job does not sleep again).
-- A job leaving for good releases its singleton key (lib.lua release_holds).
-- A token that does not match changes nothing (ok=false). A job no longer active whose token still
-- matches has already taken this outcome (an HTTP retry): ok=true, nothing changes twice.
-- A job that asked for a callback or has hooks gets its delivery job here (lib.lua notify).
-- Terminal indexes are trimmed to the queue's retention (lib.lua apply_retention).
-- Counters, histograms, throughput and the call's events are written once, with the queue's meta.
-- A job that ends tells the jobs waiting on it (flow.lua), in this call.
-- Usage an attempt recorded is added to the job's 'u' field, to the queue's totals in meta and to the
-- queue's usage hash of the month (per owner and day, and per owner and month): one HMGET and one HSET
-- per call, whatever the number of outcomes, and a PEXPIRE when an owner's first usage of a day arrives.
-- Cache answers count in meta ('ch', 'cm').
-- KEYS: the queue's block (lib.lua block), then the blocks of other queues of its flows (plan.fq), then
-- the queue's usage hash of the month when uk > 0.
-- ARGV[1] now ms or -1, ARGV[2] JSON plan (shared/scriptcalls.py FinishPlan)
--   {o: [{id: unique id, k: token, st: status, r: result JSON|null, e: {kind, message}|null,
--         ra: delay ms|null (retry, sleep), p: progress|null, g: [log lines], sn: sleep step name JSON,
--         us: {i, o, c: micro-USD, m}|null, ch: "hit"|"miss"|null}],
--    u: jitter draw, fq: [[queue, KEYS index before its block]], this queue first,
--    uk: KEYS index of the usage hash (0: none), ud: day of the month "DD", ux: usage hash expiry ms}
-- Returns JSON [[ok 0|1, state|"", 1 when a delivery job was written], ...] in outcome order.
local now = now_ms(ARGV[1])
local plan = cjson.decode(ARGV[2])
local Q = block(0)
local s = meta(Q, now)
local self_queue = flow_blocks(plan.fq)
local replies = {}
local moved, delayed, writes = {}, {}, {}
local terminal = {completed = {}, failed = {}, cancelled = {}}
local by_state = {}
local owners = {}
local counts = {}
local ids = {}
local usage, usage_owners = {}, {} -- owner -> {input, output, cost micros, jobs}, owners in order
local ended = {} -- {h, id} of jobs leaving for good: their singleton keys are released
for i, o in ipairs(plan.o) do ids[i] = o.id end
local recs = records(Q, ids)

for i, o in ipairs(plan.o) do
  local rec = recs[i]
  local m = unpack_m(rec[2])
  if not rec[2] or m.k ~= o.k then
    replies[i] = {0, shown_state(m, now)}
  elseif m.s ~= 'active' then
    replies[i] = {1, shown_state(m, now)}
  else
    local h = head(rec[1])
    local attempt = m.a
    local status = o.st
    local logs = append_logs(rec[4], o.g)
    if logs then writes[#writes + 1] = o.id .. ':g'; writes[#writes + 1] = logs end
    if o.p ~= cjson.null and o.p then m.p = o.p end
    if o.us ~= cjson.null and o.us then
      local u = {i = o.us.i, o = o.us.o, c = o.us.c, m = o.us.m}
      if rec[9] then
        local old = cjson.decode(rec[9])
        u.i, u.o, u.c = u.i + old.i, u.o + old.o, u.c + old.c
        if u.m == cjson.null or not u.m then u.m = old.m end
      end
      writes[#writes + 1] = o.id .. ':u'; writes[#writes + 1] = cjson.encode(u)
      local t = usage[h.o]
      if not t then t = {0, 0, 0, 0}; usage[h.o] = t; usage_owners[#usage_owners + 1] = h.o end
      t[1], t[2], t[3], t[4] = t[1] + o.us.i, t[2] + o.us.o, t[3] + o.us.c, t[4] + 1
      counts.ui = (counts.ui or 0) + o.us.i
      counts.uo = (counts.uo or 0) + o.us.o
      counts.uc = (counts.uc or 0) + o.us.c
    end
    if o.ch == 'hit' then counts.ch = (counts.ch or 0) + 1 elseif o.ch == 'miss' then counts.cm = (counts.cm or 0) + 1 end
    local err, delivered = nil, nil
    if status ~= 'completed' and o.e ~= cjson.null and o.e then
      err = {kind = o.e.kind, message = o.e.message, attempt = attempt, at = now}
    end
    -- Cancel wins over any late outcome, a result included: the caller was told the job is cancelled.
    if m.x == '1' then status = 'cancelled' end
    local state, delay = status, nil
    if status == 'sleep' then
      -- Not a failure: the attempt is given back and the sleep becomes a step, with its wake time.
      state, delay = 'delayed', math.max(0, tonumber(o.ra) or 0)
      m.a = math.max(0, m.a - 1)
      if o.sn and not has_step(rec[6], o.sn) then
        writes[#writes + 1] = o.id .. ':s'
        writes[#writes + 1] = (rec[6] or '') .. o.sn .. '\t' .. n2s(now + delay) .. '\n'
      end
    elseif status == 'failed' or status == 'retry' then
      local after = nil
      if status == 'retry' and o.ra ~= cjson.null and o.ra then after = o.ra end
      delay = retry_delay_ms(h, attempt, err and err.kind, (plan.u + i * 0.6180339887) % 1, after)
      if delay then state = 'delayed' else state = 'failed' end
    end
    if err then
      writes[#writes + 1] = o.id .. ':e'; writes[#writes + 1] = push_error(rec[3], err, LIMITS.errors)
    end
    local ran = math.max(0, now - (tonumber(m.sa) or now))
    if state == 'delayed' then
      local at = now + delay
      m.s, m.ra, m.sa = 'queued', at, ''
      delayed[#delayed + 1] = n2s(at * 10 + h.p)
      delayed[#delayed + 1] = o.id
      if status ~= 'sleep' then counts.retried = (counts.retried or 0) + 1 end
      mlower(s, 'nd', at)
    else
      m.s, m.fa = state, now
      if state == 'completed' then
        m.p = 100
        if o.r ~= cjson.null and o.r then writes[#writes + 1] = o.id .. ':r'; writes[#writes + 1] = o.r end
      end
      if notify(s, o.id, h, state) then delivered = 1 end
      local list = terminal[state]
      list[#list + 1] = n2s(now)
      list[#list + 1] = o.id
      counts[state] = (counts[state] or 0) + 1
      ended[#ended + 1] = {h, o.id}
      if rec[8] then flow_notify(o.id .. '.' .. self_queue, state, cjson.decode(rec[8])) end
    end
    writes[#writes + 1] = o.id .. ':m'; writes[#writes + 1] = pack_m(m)
    if state == 'completed' or state == 'failed' then
      counts.run_ms = (counts.run_ms or 0) + ran
      local b = 'hr' .. bucket(ran)
      counts[b] = (counts[b] or 0) + 1
    end
    moved[#moved + 1] = o.id
    if s.pol.oc > 0 then owners[h.o] = (owners[h.o] or 0) - 1 end
    by_state[state] = by_state[state] or {}
    table.insert(by_state[state], o.id)
    replies[i] = {1, state, delivered}
  end
end

flow_run(now)
local missing = flow_missing()
if missing then return missing end
if #moved > 0 then
  stage(Q, writes)
  zrem(Q.state.active, moved)
  release_holds(Q, 's', ended)
  if s.pol.oc > 0 then add_owner_active(Q, owners) end
  local added = {}
  for state, pairs_ in pairs(terminal) do
    if #pairs_ > 0 then zadd(Q.state[state], pairs_); added[state] = true end
  end
  zadd(Q.state.delayed, delayed)
  for field, amount in pairs(counts) do madd(s, field, amount) end
  add_throughput(s, counts.completed or 0, counts.failed or 0)
  for _, state in ipairs({'completed', 'failed', 'cancelled', 'delayed'}) do
    if by_state[state] then emit(s, state, by_state[state]) end
  end
  -- Retries are due at their time ('nd'). In a limited queue a freed slot makes its waiting jobs
  -- claimable again, so its due time is computed afresh.
  s.leases_ended = true -- the earliest lease deadline is settled at commit (lib.lua settle_leases)
  if s.pol.cc > 0 or s.pol.oc > 0 then
    s.full = s.pol.cc > 0 and redis.call('ZCARD', Q.state.active) >= s.pol.cc
    s.waiting = redis.call('ZCARD', Q.state.waiting) > 0
    refresh_due(s, s.waiting, nil, s.full)
  else
    if s.v.nd then due_by(s, tonumber(s.v.nd)) end
  end
  apply_retention(s, added)
end
flow_apply(now)
-- Usage after the flows: a call that stops there for a queue it lacks has added none (it is sent again).
if #usage_owners > 0 and plan.uk > 0 then
  local key = KEYS[plan.uk]
  local fields = {}
  for _, owner in ipairs(usage_owners) do
    fields[#fields + 1] = plan.ud .. '|' .. owner; fields[#fields + 1] = 'M|' .. owner
  end
  local got = redis.call('HMGET', key, unpack(fields))
  local flat, fresh = {}, false
  for j, field in ipairs(fields) do
    fresh = fresh or not got[j]
    local t = usage[usage_owners[math.floor((j + 1) / 2)]]
    local n, k = {0, 0, 0, 0}, 1
    for v in string.gmatch(got[j] or '', '%d+') do n[k] = tonumber(v); k = k + 1 end
    flat[#flat + 1] = field
    flat[#flat + 1] = n2s(n[1] + t[1]) .. ' ' .. n2s(n[2] + t[2]) .. ' ' .. n2s(n[3] + t[3]) .. ' ' .. n2s(n[4] + t[4])
  end
  redis.call('HSET', key, unpack(flat))
  -- The expiry moves on with each new owner-day field (the first write of a month makes one), so most
  -- calls skip it and a month's hash still outlives its last day by `ux`.
  if fresh then redis.call('PEXPIRE', key, plan.ux) end
end
commit()
return cjson.encode(replies)
