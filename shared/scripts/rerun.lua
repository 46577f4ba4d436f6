-- rerun.lua (Engine.retry, Engine.retry_failed): a manual re-run of failed or cancelled jobs, back to
-- waiting with attempts reset, errors and logs kept, key expiry removed. One job (with an owner check)
-- or up to a limit from a queue's dead-letter set. (Automatic retries are lib.lua's retry_delay_ms.)
-- KEYS: none (keys derive from the prefix; see lib.lua).
-- ARGV[1] prefix, ARGV[2] now ms or -1, ARGV[3] mode "job" | "queue",
-- job: ARGV[4] job id, ARGV[5] owner or ""; queue: ARGV[4] queue, ARGV[5] limit.
-- Returns, for "job", JSON {now, j: flat job hash}; for "queue", the number of jobs retried.
-- The last token is kept so a late re-send of the old attempt's outcome stays a harmless no-op.
local now = now_ms()
local function requeue(q, ids, prios, owners, from, tokens)
  local meta = redis.call('HMGET', k_meta(q), 'paused', 'pol', 'vc', 'seq')
  local items = {}
  for i, id in ipairs(ids) do items[i] = {prios[i], id, owners[i]} end
  local pairs_ = arrival_scores(q, items, policy(meta[2]).oc, meta[3], meta[4])
  for i, id in ipairs(ids) do
    redis.call('HSET', k_job(id), 'm', pack_m({s = 'queued', a = 0, ra = now, k = tokens[i]}))
    redis.call('HDEL', k_job(id), 'r')
    redis.call('PERSIST', k_job(id))
  end
  zrem(k_state(q, from), ids)
  zadd(k_state(q, 'waiting'), pairs_)
  mark_due(q, now, meta[1] == '1')
  add_event(q, now, 'waiting', ids)
end

if ARGV[3] == 'job' then
  local id, owner = ARGV[4], ARGV[5]
  local f = redis.call('HMGET', k_job(id), 'm', 'd')
  if not f[1] then return fail('not_found', 'job not found') end
  local h = head(f[2])
  if owner ~= '' and h.o ~= owner then return fail('not_found', 'job not found') end
  local m = unpack_m(f[1])
  if m.s ~= 'failed' and m.s ~= 'cancelled' then
    return fail('invalid_transition', 'only a failed or cancelled job can be retried; it is '
      .. shown_state(m, now))
  end
  requeue(h.q, {id}, {h.p}, {h.o}, m.s, {m.k})
  return cjson.encode({now = now, j = redis.call('HGETALL', k_job(id))})
end

local q, limit = ARGV[4], tonumber(ARGV[5])
local ids = redis.call('ZRANGE', k_state(q, 'failed'), 0, limit - 1)
local found, prios, owners, tokens = {}, {}, {}, {}
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', k_job(id), 'm', 'd')
  if f[2] then
    local h = head(f[2])
    found[#found + 1] = id
    prios[#prios + 1] = h.p
    owners[#owners + 1] = h.o
    tokens[#tokens + 1] = unpack_m(f[1]).k
  end
end
if #ids > #found then
  -- Index entries whose job hash expired: drop them.
  local gone = {}
  local have = {}
  for _, id in ipairs(found) do have[id] = true end
  for _, id in ipairs(ids) do if not have[id] then gone[#gone + 1] = id end end
  zrem(k_state(q, 'failed'), gone)
end
if #found > 0 then requeue(q, found, prios, owners, 'failed', tokens) end
return #found
