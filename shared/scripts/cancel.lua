-- cancel.lua: waiting/delayed -> cancelled at once; active -> cancellation requested (its consumer
-- records "cancelled" at its next heartbeat or finish); terminal -> unchanged.
-- KEYS: none (keys derive from the prefix; see lib.lua).
-- ARGV[1] prefix, ARGV[2] now ms or -1, ARGV[3] job id, ARGV[4] owner or "" (any).
-- A cancelled job is kept for its queue's policy's cancelled retention (lib.lua policy).
-- Returns the flat job hash after the change; error not_found when missing or owned by another.
local now = now_ms()
local id, owner = ARGV[3], ARGV[4]
local key = k_job(id)
local f = redis.call('HMGET', key, 'm', 'd')
if not f[1] then return fail('not_found', 'job not found') end
local h = head(f[2])
if owner ~= '' and h.o ~= owner then return fail('not_found', 'job not found') end
local q = h.q
local m = unpack_m(f[1])
if m.s == 'queued' then
  -- A delayed job may already have been promoted to waiting: remove it from both.
  redis.call('ZREM', k_state(q, 'waiting'), id)
  redis.call('ZREM', k_state(q, 'delayed'), id)
  redis.call('ZADD', k_state(q, 'cancelled'), n2s(now), id)
  m.s, m.fa = 'cancelled', now
  redis.call('HSET', key, 'm', pack_m(m))
  redis.call('PEXPIRE', key, n2s(policy(redis.call('HGET', k_meta(q), 'pol')).kx))
  redis.call('HINCRBY', k_meta(q), 'cancelled', 1)
  add_event(q, now, 'cancelled', {id})
elseif m.s == 'active' and m.x ~= '1' then
  m.x = '1'
  redis.call('HSET', key, 'm', pack_m(m))
end
return cjson.encode({now = now, j = redis.call('HGETALL', key)})
