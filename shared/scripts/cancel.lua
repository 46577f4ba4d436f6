-- cancel.lua: waiting/delayed -> cancelled at once; active -> cancellation requested (its consumer
-- records "cancelled" at its next heartbeat or finish); terminal -> unchanged.
-- KEYS: the queue's block (lib.lua block).
-- ARGV[1] now ms or -1, ARGV[2] JSON plan {id: unique id, owner: owner or "" (any)}.
-- A queued job cancelled releases its singleton and debounce keys (lib.lua release_holds).
-- A job that asked for a callback or has hooks gets its delivery job (lib.lua notify).
-- A cancelled job is kept for its queue's cancelled retention (lib.lua apply_retention).
-- Returns JSON {now, j: the flat record after the change}; error not_found when missing or owned by another.
local now = now_ms(ARGV[1])
local Q = block(0)
local plan = cjson.decode(ARGV[2])
local id, owner = plan.id, plan.owner
local rec = records(Q, {id})[1]
if not rec[1] or not rec[2] then return fail('not_found', 'job not found') end
local h = head(rec[1])
if owner ~= '' and h.o ~= owner then return fail('not_found', 'job not found') end
local m = unpack_m(rec[2])
if m.s == 'queued' then
  -- A delayed job may already have been promoted to waiting: remove it from both.
  redis.call('ZREM', Q.state.waiting, id)
  redis.call('ZREM', Q.state.delayed, id)
  redis.call('ZADD', Q.state.cancelled, n2s(now), id)
  m.s, m.fa = 'cancelled', now
  rec[2] = pack_m(m)
  stage(Q, {id .. ':m', rec[2]}) -- one HSET at commit, with a delivery job's record when there is one
  release_holds(Q, 's', {{h, id}})
  release_holds(Q, 'd', {{h, id}})
  local s = meta(Q, now)
  notify(s, id, h, 'cancelled')
  madd(s, 'cancelled', 1)
  emit(s, 'cancelled', {id})
  apply_retention(s, {cancelled = true})
elseif m.s == 'active' and m.x ~= '1' then
  m.x = '1'
  rec[2] = pack_m(m)
  redis.call('HSET', Q.jobs, id .. ':m', rec[2])
end
commit()
return cjson.encode({now = now, j = flat_record(rec)})
