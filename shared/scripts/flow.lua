-- flow.lua: flows of dependent jobs, prepended to every script after lib.lua.
-- A job that waits for others (a flow's parent, or a job with depends_on) is in state 'waiting-children'
-- (index KEYS block 'waiting-children') and keeps `<id>:f` = {n: jobs it still waits for, f: those that
-- ended failed under the 'fail' policy, c: its flow children (a cancel reaches them), d: its depends_on,
-- x: 1 while it is failed because of one of them}. A job others wait for keeps `<id>:p` = [[the waiting
-- job's id, policy]] (policy 'f' fail the parent, 'i' ignore the failure, 'c' continue, failure recorded).
-- The moment a job ends (finish, a reap into failed, a cancel) the same script moves the counters of the
-- jobs waiting on it, and cascades: a parent failed by a child tells its own parents. A re-run of a job
-- that failed its parent revives the parent's wait (and upwards). Records of other queues are read only
-- through blocks the call carries in KEYS (plan.fq: [[queue, KEYS index before its block]]): a record in
-- a queue the call lacks stops the script BEFORE it writes anything, with error `needs_queues <queues>`,
-- and the engine calls again with those blocks (shared/engine.py `_flowing`).
local FQ = {} -- queue name -> its block (lib.lua block)
local FS = {recs = {}, order = {}, missing = {}, missing_list = {}, work = {}}

-- The call's blocks by queue name; returns the first one's queue (the call's own).
local function flow_blocks(fq)
  FQ = {}
  for _, e in ipairs(fq or {}) do FQ[e[1]] = block(e[2]) end
  return fq and fq[1] and fq[1][1]
end

local function split_full(full) return string.sub(full, 1, 26), string.sub(full, 28) end

-- A job's record in the flow session (read once per call, changed in memory, written by flow_apply):
-- nil when its queue is not in the call's KEYS (noted in missing), false when the job is gone.
local function fput(full, Q, d, m, f, p, e)
  local u = string.sub(full, 1, 26)
  local r = {full = full, u = u, Q = Q, h = head(d), m = unpack_m(m or fresh_m(u)), e = e,
    p = p and cjson.decode(p) or {}}
  if f then r.f = cjson.decode(f) end
  r.was = r.m.s
  FS.recs[full] = r
  FS.order[#FS.order + 1] = full
  return r
end
-- Load the records of `fulls` not yet in the session: one HMGET per queue.
local function fload(fulls)
  local by_q, order = {}, {}
  for _, full in ipairs(fulls) do
    if FS.recs[full] == nil then
      local u, q = split_full(full)
      if not FQ[q] then
        if not FS.missing[q] then FS.missing[q] = true; FS.missing_list[#FS.missing_list + 1] = q end
      elseif not by_q[q] then
        by_q[q] = {full}; order[#order + 1] = q
      else
        by_q[q][#by_q[q] + 1] = full
      end
    end
  end
  for _, q in ipairs(order) do
    local fields = {}
    for _, full in ipairs(by_q[q]) do
      local u = string.sub(full, 1, 26)
      for _, f in ipairs({u, u .. ':m', u .. ':f', u .. ':p', u .. ':e'}) do fields[#fields + 1] = f end
    end
    local got = redis.call('HMGET', FQ[q].jobs, unpack(fields))
    for i, full in ipairs(by_q[q]) do
      local b = (i - 1) * 5
      if got[b + 1] then
        fput(full, FQ[q], got[b + 1], got[b + 2], got[b + 3], got[b + 4], got[b + 5])
      else
        FS.recs[full] = false
      end
    end
  end
end
local function frec(full)
  if FS.recs[full] == nil then fload({full}) end
  return FS.recs[full]
end
-- A record the script already read (lib.lua records: {d, m, e, g, r, s, f, p}) into the session.
local function frec_of(full, Q, rec)
  return FS.recs[full] or fput(full, Q, rec[1], rec[2], rec[7], rec[8], rec[3])
end

-- The error of a flow that cannot go on without other queues' keys; nil when the call has them all.
local function flow_missing()
  if #FS.missing_list == 0 then return nil end
  return fail('needs_queues', table.concat(FS.missing_list, ' '))
end

-- Job `full` ended in `state` (completed, failed, cancelled): queue the news for each job waiting on it.
-- dir -1: a re-run took the end back (`state` is the end it had).
local function flow_notify(full, state, parents, dir)
  for _, e in ipairs(parents or {}) do FS.work[#FS.work + 1] = {e[1], e[2], full, state, dir or 1} end
end

-- Move the counters of every job waiting on the ended ones, and the states that follow.
local function flow_run(now)
  local i = 1
  while i <= #FS.work do
    local w = FS.work[i]
    if FS.recs[w[1]] == nil then -- load the parents of every queued item at once
      local ids = {}
      for j = i, #FS.work do ids[#ids + 1] = FS.work[j][1] end
      fload(ids)
    end
    i = i + 1
    local P = FS.recs[w[1]]
    if P and P.f then
      local f, dir = P.f, w[5]
      local bad = w[4] ~= 'completed' and w[2] == 'f'
      f.n = f.n - dir
      if bad then f.f = math.max(0, f.f + dir) end -- a re-run parent forgot its children's failures
      P.dirty = true
      if dir == 1 and P.m.s == 'waiting-children' then
        if bad then
          P.m.s, P.m.fa, f.x = 'failed', now, 1
          P.err = {kind = 'child_failed', message = 'child ' .. w[3] .. ' ' .. w[4], attempt = P.m.a, at = now}
          flow_notify(P.full, 'failed', P.p, 1)
        elseif f.n <= 0 and f.f <= 0 then
          P.m.s, P.m.ra = 'queued', now
        end
      elseif dir == -1 and P.m.s == 'failed' and f.x == 1 and f.f <= 0 then
        P.m.s, P.m.fa, f.x = 'waiting-children', '', nil
        if f.n <= 0 then P.m.s, P.m.ra = 'queued', now end
        flow_notify(P.full, 'failed', P.p, -1)
      elseif dir == -1 and P.m.s == 'queued' and f.n > 0 then
        P.m.s = 'waiting-children' -- released but not yet running: it waits for the re-run child too
      end
    end
  end
end

-- Cancel a flow's pending children, and theirs: waiting ones at once, running ones by request.
local function flow_cancel_children(children, now)
  local level = children or {}
  while #level > 0 do
    fload(level)
    local next_level = {}
    for _, full in ipairs(level) do
      local r = FS.recs[full]
      if r then
        local st = r.m.s
        if st == 'queued' or st == 'waiting-children' then
          r.m.s, r.m.fa, r.dirty = 'cancelled', now, true
          flow_notify(r.full, 'cancelled', r.p, 1)
          for _, c in ipairs(r.f and r.f.c or {}) do next_level[#next_level + 1] = c end
        elseif st == 'active' and r.m.x ~= '1' then
          r.m.x, r.dirty = '1', true
        end
      end
    end
    level = next_level
  end
end

-- Write what the session changed: records (staged with the call's one HSET per jobs hash), state indexes
-- (one ZREM and one ZADD per index and call), counters and events of each queue (lib.lua meta/commit).
-- A job whose state did not move costs no read of its queue's meta.
local function flow_apply(now)
  local rem, rem_order, add, add_order, arrivals, arrival_order = {}, {}, {}, {}, {}, {}
  local function push(map, order, key, ...)
    local list = map[key]
    if not list then list = {}; map[key] = list; order[#order + 1] = key end
    for _, v in ipairs({...}) do list[#list + 1] = v end
  end
  for _, full in ipairs(FS.order) do
    local r = FS.recs[full]
    if r and r.dirty then
      local Q, u = r.Q, r.u
      local flat = {}
      if r.f then flat[#flat + 1] = u .. ':f'; flat[#flat + 1] = cjson.encode(r.f) end
      if r.p.changed then
        r.p.changed = nil
        flat[#flat + 1] = u .. ':p'; flat[#flat + 1] = cjson.encode(r.p)
      end
      flat[#flat + 1] = u .. ':m'; flat[#flat + 1] = pack_m(r.m)
      if r.err then
        flat[#flat + 1] = u .. ':e'; flat[#flat + 1] = push_error(r.e, r.err, LIMITS.errors)
      end
      stage(Q, flat)
      local st = r.m.s
      if st ~= r.was then
        local s = meta(Q, now)
        if r.was == 'queued' then
          push(rem, rem_order, Q.state.waiting, u)
          push(rem, rem_order, Q.state.delayed, u)
        elseif Q.state[r.was] then
          push(rem, rem_order, Q.state[r.was], u)
        end
        if st == 'queued' then
          local list = arrivals[s]
          if not list then list = {}; arrivals[s] = list; arrival_order[#arrival_order + 1] = s end
          list[#list + 1] = {r.h.p, u, r.h.o}
          s.waiting = true -- for a due time the call computes at commit (lib.lua settle_leases)
          due_by(s, now)
          emit(s, 'waiting', {u})
        else
          push(add, add_order, Q.state[st], n2s(now), u)
          emit(s, st, {u})
          if st == 'completed' or st == 'failed' or st == 'cancelled' then notify(s, u, r.h, st) end
          if st == 'failed' or st == 'cancelled' then madd(s, st, 1) end
          if st == 'failed' then add_throughput(s, 0, 1) end
        end
      end
    end
  end
  for _, key in ipairs(rem_order) do zrem(key, rem[key]) end
  for _, key in ipairs(add_order) do zadd(key, add[key]) end
  for _, s in ipairs(arrival_order) do zadd(s.Q.state.waiting, arrival_scores(s, arrivals[s])) end
  FS = {recs = {}, order = {}, missing = {}, missing_list = {}, work = {}}
end
