-- cancel.lua: waiting/delayed/waiting-children -> cancelled at once; active -> cancellation requested (its
-- consumer records "cancelled" at its next heartbeat or finish); terminal -> unchanged. Cancelling a flow's
-- parent cancels its pending children (and theirs; running ones by request), and a cancelled job tells
-- the jobs waiting on it (flow.lua), in this call.
-- KEYS: the queue's block (lib.lua block), then the blocks of other queues of its flows (plan.fq).
-- ARGV[1] now ms or -1, ARGV[2] JSON plan {id: unique id, owner: owner or "" (any), fq}.
-- A queued (or waiting-children) job cancelled releases its singleton and debounce keys (lib.lua
-- release_holds).
-- A job that asked for a callback or has hooks gets its delivery job (lib.lua notify, from flow_apply).
-- A cancelled job is kept for its queue's cancelled retention (lib.lua apply_retention).
-- Returns JSON {now, j: the flat record after the change}; error not_found when missing or owned by another.
local now = now_ms(ARGV[1])
local Q = block(0)
local plan = cjson.decode(ARGV[2])
local self_queue = flow_blocks(plan.fq)
local id, owner = plan.id, plan.owner
local rec = records(Q, {id})[1]
if not rec[1] or not rec[2] then return fail('not_found', 'job not found') end
local h = head(rec[1])
if owner ~= '' and h.o ~= owner then return fail('not_found', 'job not found') end
local m = unpack_m(rec[2])
if m.s == 'queued' or m.s == 'waiting-children' then
  -- The flow session moves it (flow.lua flow_apply): its index, counter and event, with its flow's.
  local r = frec_of(id .. '.' .. self_queue, Q, rec)
  r.m.s, r.m.fa, r.dirty = 'cancelled', now, true
  flow_notify(r.full, 'cancelled', r.p)
  flow_cancel_children(r.f and r.f.c, now)
  flow_run(now)
  local missing = flow_missing()
  if missing then return missing end
  rec[2] = pack_m(r.m)
  release_holds(Q, 's', {{h, id}})
  release_holds(Q, 'd', {{h, id}})
  flow_apply(now)
  apply_retention(meta(Q, now), {cancelled = true})
elseif m.s == 'active' and m.x ~= '1' then
  m.x = '1'
  rec[2] = pack_m(m)
  redis.call('HSET', Q.jobs, id .. ':m', rec[2])
end
commit()
return cjson.encode({now = now, j = flat_record(rec)})
