-- enqueue.lua: create jobs (any queues) in one call, or return the existing job of a repeated
-- idempotency key. All or nothing: every idempotency key is checked before anything is written.
-- KEYS: none (keys derive from the prefix; see lib.lua).
-- ARGV[1] prefix, ARGV[2] now ms or -1, ARGV[3] JSON plan:
--   {w: idempotency window ms, tr: trigger expiry ms, cap: listing index cap,
--    jobs: [{id, q, d: immutable JSON, pr: priority, delay: ms, at: run-at ms or null,
--            o: owner, ik: idempotency key name or null, ih: request hash,
--            ix: [listing index key names],
--            tk: its lane's trigger key}]}
-- Returns JSON {now, t: [trigger keys newly set (no run of that lane was pending)],
--   r: [[id, 1, index state, packed m] | [id, 0, flat job hash] for an idempotent repeat]}.
local plan = cjson.decode(ARGV[3])
local now = now_ms()
local jobs = plan.jobs
local existing = {}

for i, job in ipairs(jobs) do
  if job.ik ~= cjson.null and job.ik then
    local held = redis.call('GET', job.ik)
    if held then
      local id, h = string.match(held, '^([^|]+)|(.*)$')
      if h ~= job.ih then return fail('idempotency_conflict', 'jobs[' .. (i - 1) .. ']') end
      local flat = redis.call('HGETALL', k_job(id))
      if #flat > 0 then existing[i] = {id, 0, flat} end
    end
  end
end

local replies = {}
local per_queue = {}
local created = 0
local listing, listing_order = {}, {}
for i, job in ipairs(jobs) do
  if existing[i] then
    replies[i] = existing[i]
  else
    local q = job.q
    local g = per_queue[q]
    if not g then
      g = {waiting = {}, delayed = {}, ids = {}, wids = {}, did = {}, first = nil, first_delayed = nil}
      per_queue[q] = g
    end
    local at = now + job.delay
    if job.at ~= cjson.null and job.at then at = job.at end
    local state = 'waiting'
    if at > now then state = 'delayed' else at = now end
    redis.call('HSET', k_job(job.id), 'd', job.d, 'm', pack_m({s = 'queued', a = 0, ra = at}))
    if state == 'waiting' then
      g.wids[#g.wids + 1] = {job.pr, job.id, job.o}
    else
      g.delayed[#g.delayed + 1] = n2s(at * 10 + job.pr)
      g.delayed[#g.delayed + 1] = job.id
      g.did[#g.did + 1] = job.id
      if not g.first_delayed or at < g.first_delayed then g.first_delayed = at end
    end
    if not g.first or at < g.first then g.first = at end
    g.ids[#g.ids + 1] = job.id
    for _, ix in ipairs(job.ix) do
      local list = listing[ix]
      if not list then list = {}; listing[ix] = list; listing_order[#listing_order + 1] = ix end
      list[#list + 1] = 0
      list[#list + 1] = job.id
    end
    if job.ik ~= cjson.null and job.ik then
      redis.call('SET', job.ik, job.id .. '|' .. job.ih, 'PX', plan.w)
    end
    replies[i] = {job.id, 1, state, pack_m({s = 'queued', a = 0, ra = at})}
    created = created + 1
  end
end

for q, g in pairs(per_queue) do
  local meta = redis.call('HMGET', k_meta(q), 'paused', 'pol', 'vc', 'seq')
  local pol = policy(meta[2])
  if #g.wids > 0 then zadd(k_state(q, 'waiting'), arrival_scores(q, g.wids, pol.oc, meta[3], meta[4])) end
  zadd(k_state(q, 'delayed'), g.delayed)
  redis.call('SADD', K_QUEUES, q)
  -- A queue at its concurrency limit stays due at its next lease deadline for new waiting jobs.
  local first = g.first
  local limit = pol.cc
  if limit > 0 and #g.wids > 0 and redis.call('ZCARD', k_state(q, 'active')) >= limit then
    first = g.first_delayed
  end
  if first then mark_due(q, first, meta[1] == '1') end
  local wl = {}
  for _, w in ipairs(g.wids) do wl[#wl + 1] = w[2] end
  add_event(q, now, 'waiting', wl)
  add_event(q, now, 'delayed', g.did)
end

-- Listing indexes: one ZADD per index and call, each capped to its newest plan.cap entries.
for _, ix in ipairs(listing_order) do
  zadd(ix, listing[ix])
  redis.call('ZREMRANGEBYRANK', ix, 0, -plan.cap - 1)
end

-- Push triggers, one flag per consumer lane: SET NX, so a burst of submits asks each lane for one run
-- until a claim clears its flag (or it expires, so a lost trigger cannot block later ones).
local triggers, asked = {}, {}
for i, job in ipairs(jobs) do
  if not existing[i] and not asked[job.tk] then
    asked[job.tk] = true
    if redis.call('SET', job.tk, '1', 'NX', 'PX', plan.tr) ~= false then triggers[#triggers + 1] = job.tk end
  end
end
return cjson.encode({now = now, t = triggers, r = replies})
