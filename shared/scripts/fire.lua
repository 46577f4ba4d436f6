-- fire.lua: fire the queue's due schedules in one atomic call. Each schedule fires only if its record
-- still has the version the caller read (claim.lua's `sd`): of consumers racing for one slot, the first
-- writes the next version and the others fire nothing, so a slot fires once. A fired schedule's jobs
-- are submitted as enqueue.lua does (its `enqueue` part), its record and next slot written; the caller
-- then claims them.
-- KEYS: the queue's block (lib.lua block), then the listing keys the enqueue plan points at.
-- ARGV[1] now ms or -1, ARGV[2] JSON plan (shared/scriptcalls.py FirePlan): {f: [{id, v: the version
-- read, rec: the record after this firing (JSON text), next: next slot ms or null, j: [batch positions
-- of its jobs in e]}], e: enqueue.lua's plan for every job of f (one group, or none)}.
-- Returns JSON [[ids of the schedules fired], enqueue's reply (or {r: []})].
local now = n2s(now_ms(ARGV[1]))
local Q = block(0)
local s = meta(Q, tonumber(now))
local plan = cjson.decode(ARGV[2])
local fired, keep = {}, {}
for _, f in ipairs(plan.f) do
  local held = redis.call('HGET', Q.schedules, f.id)
  if held and cjson.decode(held).version == f.v then
    redis.call('HSET', Q.schedules, f.id, f.rec)
    if f.next == cjson.null then
      redis.call('ZREM', Q.schedule_times, f.id)
    else
      redis.call('ZADD', Q.schedule_times, n2s(f.next), f.id)
    end
    for _, j in ipairs(f.j) do keep[j] = true end
    fired[#fired + 1] = f.id
  end
end
local enqueued = '{"r":[]}'
local group = plan.e.g[1]
if group then
  local jobs = {}
  for _, job in ipairs(group.jobs) do if keep[job.i] then jobs[#jobs + 1] = job end end
  if #jobs > 0 then
    group.jobs = jobs
    enqueued = enqueue_part({now, cjson.encode(plan.e)})
  end
end
settle_schedules(s)
-- Due by the next slot (or now, for the jobs just submitted), not later than any other work.
refresh_due(s, redis.call('ZCARD', Q.state.waiting) > 0, nil, false)
commit()
return '[' .. cjson.encode(fired) .. ',' .. enqueued .. ']'
