-- enqueue.lua: create jobs (of one or more queues) in one call, or return the existing job of a repeated
-- idempotency key. All or nothing: every idempotency key and singleton key is checked before anything is
-- written.
-- Singleton (`sg`): at most one queued or active job per key (per queue and owner): a submit while one
-- holds the key is refused (singleton_conflict, naming it). Debounce (`db`): a submit while the key's
-- job still waits out its window joins it: that job takes this submit's record (the last payload wins)
-- and its run-at moves to now + the window (never earlier), no later than its first submit + the longest
-- wait. Both
-- hold their key in the queue's dedup hash (lib.lua release_holds).
-- KEYS: one block per queue (lib.lua block), then the listing and idempotency keys the plan points at.
-- ARGV[1] now ms (the submitter's clock, as in the job ids), ARGV[2] JSON plan (shared/scriptcalls.py
-- EnqueuePlan):
--   {w: idempotency window ms, tr: trigger expiry ms, cap: listing index cap,
--    g: [{q: queue, b: KEYS index before the queue's block,
--         jobs: [{i: position in the batch, u: unique id, d: immutable JSON, pr: priority, delay: ms,
--                 at: run-at ms or null, o: owner, ik: KEYS index of the idempotency key or 0,
--                 ih: request hash, ix: [KEYS indexes of listing indexes], ln: its consumer lane,
--                 flows (flow.lua), each optional: fc: [its flow children's ids, in this call],
--                 fp: [[its flow parent's id, policy]], dx: [ids of existing jobs it depends on],
--                 sg: singleton digest, db: debounce digest, dw: window ms, dm: longest wait ms}]}],
--    fq: [[queue, KEYS index before its block]]: every queue the call names, its jobs' or dependencies'}
-- A job with children or dependencies still pending waits for them (waiting-children); a dependency must
-- be the submitter's, not failed or cancelled, and below MAX_PARENTS jobs waiting on it.
-- Returns JSON {t: [lanes asked for a run (none was pending for the queue)],
--   r: [[1, index state, packed m, flow field f or false] | [0, public id, flat record] for an idempotent
--       repeat | [2, unique id, packed m] for a submit that joined a debounced job] by position}.
local now = now_ms(ARGV[1])
local plan = cjson.decode(ARGV[2])
local replies = {}
local existing = {}
flow_blocks(plan.fq)
local pending = {} -- batch position -> dependencies still pending

for _, g in ipairs(plan.g) do
  local Q = block(g.b)
  for _, job in ipairs(g.jobs) do
    if job.ik > 0 then
      local held = redis.call('GET', KEYS[job.ik])
      if held then
        local id, h = string.match(held, '^([^|]+)|(.*)$')
        if h ~= job.ih then return fail('idempotency_conflict', 'jobs[' .. job.i .. ']') end
        local rec = records(Q, {string.sub(id, 1, 26)})[1]
        if rec[1] then existing[job.i] = {0, id, flat_record(rec)} end
      end
    end
  end
end

-- A job still holding its key: queued or active (a key left by a job gone another way is free).
local function live(Q, unique)
  local rec = records(Q, {unique})[1]
  if not rec[1] then return nil end
  return unpack_m(rec[2])
end

local taken = {}
for _, g in ipairs(plan.g) do
  local Q = block(g.b)
  for _, job in ipairs(g.jobs) do
    if job.sg and not existing[job.i] then
      local field = 's:' .. job.sg
      local holder = taken[field] -- an earlier job of this batch
      if not holder then
        holder = redis.call('HGET', Q.dedup, field)
        local m = holder and live(Q, holder)
        if not (m and (m.s == 'queued' or m.s == 'active' or m.s == 'waiting-children')) then holder = nil end
      end
      if holder then return fail('singleton_conflict', 'jobs[' .. job.i .. '] ' .. holder .. '.' .. g.q) end
      taken[field] = job.u
    end
  end
end

-- Dependencies (depends_on) of the jobs to create are checked before anything is written.
for _, g in ipairs(plan.g) do
  for _, job in ipairs(g.jobs) do
    for k, dep in ipairs(existing[job.i] and {} or job.dx or {}) do
      local field = 'jobs[' .. job.i .. '].depends_on[' .. (k - 1) .. '] '
      local r = frec(dep)
      if r == nil then return flow_missing() end
      if not r or r.h.o ~= job.o then return fail('not_found', field .. 'no such job') end
      local st = shown_state(r.m, now)
      if st == 'failed' or st == 'cancelled' then
        return fail('invalid', field .. 'the job it depends on already ' .. st)
      end
      if st ~= 'completed' then
        if #r.p >= LIMITS.parents then
          return fail('invalid', field .. 'already has ' .. LIMITS.parents .. ' jobs waiting on it')
        end
        r.p[#r.p + 1] = {job.u .. '.' .. g.q, 'f'}
        r.p.changed, r.dirty = true, true
        pending[job.i] = (pending[job.i] or 0) + 1
      end
    end
  end
end

local asked, asked_list = {}, {}
local listing, listing_order = {}, {}
local function list_in(ix, unique)
  local list = listing[ix]
  if not list then list = {}; listing[ix] = list; listing_order[#listing_order + 1] = ix end
  list[#list + 1] = 0
  list[#list + 1] = unique
end
for _, g in ipairs(plan.g) do
  local Q = block(g.b)
  local s = meta(Q, now)
  local fields, waiting, delayed, wids, dids, holds = {}, {}, {}, {}, {}, {}
  local kids, kid_ids = {}, {}
  local first_waiting = false
  for _, job in ipairs(g.jobs) do
    local joined = nil
    if job.db then
      local holder = redis.call('HGET', Q.dedup, 'd:' .. job.db)
      local m = holder and live(Q, holder)
      if m and m.s == 'queued' and (tonumber(m.ra) or 0) > now then
        -- Never earlier than it was (concurrent submitters' clocks differ by a little).
        local at = math.min(math.max(tonumber(m.ra), now + job.dw), id_ms(holder) + job.dm)
        m.ra = at
        joined = pack_m(m)
        fields[#fields + 1] = holder; fields[#fields + 1] = job.d
        fields[#fields + 1] = holder .. ':m'; fields[#fields + 1] = joined
        delayed[#delayed + 1] = n2s(at * 10 + job.pr)
        delayed[#delayed + 1] = holder
        dids[#dids + 1] = holder
        mlower(s, 'nd', at)
        -- Its tag listings follow the record it took (job.ix[1] is the owner's listing, which has it).
        for k = 2, #job.ix do list_in(job.ix[k], holder) end
        replies[job.i + 1] = {2, holder, joined}
      end
    end
    if existing[job.i] then
      replies[job.i + 1] = existing[job.i]
    elseif not joined then
      local at = now + job.delay
      if job.at ~= cjson.null and job.at then at = job.at end
      local state, m = 'waiting', fresh_m(job.u) -- its state field is left out (lib.lua fresh_m)
      fields[#fields + 1] = job.u; fields[#fields + 1] = job.d
      if at > now then
        state, m = 'delayed', pack_m({s = 'queued', a = 0, ra = at})
        fields[#fields + 1] = job.u .. ':m'; fields[#fields + 1] = m
      end
      if job.fp then fields[#fields + 1] = job.u .. ':p'; fields[#fields + 1] = cjson.encode(job.fp) end
      local fjson = false
      if job.fc or job.dx then
        local f = {n = #(job.fc or {}) + (pending[job.i] or 0), f = 0, c = job.fc, d = job.dx}
        fjson = cjson.encode(f)
        fields[#fields + 1] = job.u .. ':f'; fields[#fields + 1] = fjson
        if f.n > 0 then
          state, m = 'waiting-children', pack_m({s = 'waiting-children', a = 0, ra = now})
          fields[#fields + 1] = job.u .. ':m'; fields[#fields + 1] = m
        end
      end
      if state == 'waiting-children' then
        kids[#kids + 1] = n2s(now); kids[#kids + 1] = job.u
        kid_ids[#kid_ids + 1] = job.u
      elseif state == 'waiting' then
        waiting[#waiting + 1] = {job.pr, job.u, job.o}
        wids[#wids + 1] = job.u
        first_waiting = true
      else
        delayed[#delayed + 1] = n2s(at * 10 + job.pr)
        delayed[#delayed + 1] = job.u
        dids[#dids + 1] = job.u
        mlower(s, 'nd', at)
      end
      for _, ix in ipairs(job.ix) do list_in(ix, job.u) end
      if job.ik > 0 then
        redis.call('SET', KEYS[job.ik], job.u .. '.' .. g.q .. '|' .. job.ih, 'PX', plan.w)
      end
      replies[job.i + 1] = {1, state, m, fjson}
      if job.sg then holds[#holds + 1] = 's:' .. job.sg; holds[#holds + 1] = job.u end
      if job.db then holds[#holds + 1] = 'd:' .. job.db; holds[#holds + 1] = job.u end
      -- Ask the job's lane for a run of this queue unless one is pending (a claim clears it, and it
      -- expires, so a lost trigger cannot block later ones).
      if state ~= 'waiting-children' and not asked[job.ln] then
        local pending = triggers(s)
        if (pending[job.ln] or 0) <= now then
          pending[job.ln] = now + plan.tr
          set_triggers(s, pending)
          asked[job.ln] = true
          asked_list[#asked_list + 1] = job.ln
        end
      end
    end
  end
  hset_flat(Q.jobs, fields)
  if #holds > 0 then redis.call('HSET', Q.dedup, unpack(holds)) end
  if #waiting > 0 then zadd(Q.state.waiting, arrival_scores(s, waiting)) end
  zadd(Q.state.delayed, delayed)
  zadd(Q.state['waiting-children'], kids)
  emit(s, 'waiting-children', kid_ids)
  -- A queue at its concurrency limit is not made due by new waiting jobs: its next finish does that.
  local full = s.pol.cc > 0 and first_waiting and redis.call('ZCARD', Q.state.active) >= s.pol.cc
  if first_waiting and not full then due_by(s, now) end
  if #dids > 0 then due_by(s, tonumber(s.v.nd)) end
  emit(s, 'waiting', wids)
  emit(s, 'delayed', dids)
end

-- Listing indexes: one ZADD per index and call. Each is capped to its newest plan.cap entries; the trim
-- runs on about one call in 16 (decided by the last id's final character), so it costs little.
for _, ix in ipairs(listing_order) do
  local list = listing[ix]
  zadd(KEYS[ix], list)
  if string.byte(list[#list], 26) % 16 == 0 then redis.call('ZREMRANGEBYRANK', KEYS[ix], 0, -plan.cap - 1) end
end
flow_apply(now)
commit()
return cjson.encode({t = asked_list, r = replies})
