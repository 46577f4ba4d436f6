-- rerun.lua (Engine.retry, Engine.retry_failed): a manual re-run of failed or cancelled jobs, back to
-- waiting with attempts reset, errors and logs kept, result dropped. One job (with an owner check) or up
-- to a limit from the queue's dead-letter set. (Automatic retries are lib.lua's retry_delay_ms.)
-- Flows (flow.lua): a re-run job no longer counts as ended for the jobs waiting on it, and a parent it
-- had failed goes back to waiting for its children; a re-run parent forgets its children's failures
-- and waits for those still pending (waiting-children) or runs now.
-- KEYS: the queue's block (lib.lua block), then the blocks of other queues of its flows (plan.fq).
-- ARGV[1] now ms or -1, ARGV[2] JSON plan {mode: "job" | "queue"; job: id (unique), owner ("" for any);
-- queue: limit; fq}.
-- Returns, for "job", JSON {now, j: flat record}; for "queue", the number of jobs retried.
-- The last token is kept so a late re-send of the old attempt's outcome stays a harmless no-op.
local now = now_ms(ARGV[1])
local plan = cjson.decode(ARGV[2])
local Q = block(0)
local s = meta(Q, now)
local self_queue = flow_blocks(plan.fq)
-- The flow side of re-running `ids` (records `recs`): returns the ids that go to waiting, the others
-- wait for their children again (moved by flow_apply); or an error reply (needs_queues).
local function unend(ids, recs)
  local plain = {}
  for i, id in ipairs(ids) do
    local rec = recs[i]
    local waits = false
    if rec[7] or rec[8] then
      local r = frec_of(id .. '.' .. self_queue, Q, rec)
      flow_notify(r.full, r.m.s, r.p, -1)
      if r.f then
        r.f.f, r.f.x = 0, nil
        if r.f.n > 0 then
          waits, r.dirty = true, true
          r.m = {s = 'waiting-children', a = 0, k = r.m.k}
        else
          stage(Q, {id .. ':f', cjson.encode(r.f)}) -- requeue moves it
        end
      end
    end
    if not waits then plain[#plain + 1] = i end
  end
  flow_run(now)
  return plain, flow_missing()
end
local function requeue(ids, prios, owners, from, tokens)
  local items, writes, gone = {}, {}, {}
  for i, id in ipairs(ids) do
    items[i] = {prios[i], id, owners[i]}
    writes[#writes + 1] = id .. ':m'
    writes[#writes + 1] = pack_m({s = 'queued', a = 0, ra = now, k = tokens[i]})
    gone[#gone + 1] = id .. ':r'
  end
  local pairs_ = arrival_scores(s, items)
  hset_flat(Q.jobs, writes)
  hdel_list(Q.jobs, gone)
  zrem(Q.state[from], ids)
  zadd(Q.state.waiting, pairs_)
  due_by(s, now)
  emit(s, 'waiting', ids)
end

if plan.mode == 'job' then
  local id, owner = plan.id, plan.owner
  local rec = records(Q, {id})[1]
  if not rec[1] or not rec[2] then return fail('not_found', 'job not found') end
  local h = head(rec[1])
  if owner ~= '' and h.o ~= owner then return fail('not_found', 'job not found') end
  local m = unpack_m(rec[2])
  if m.s ~= 'failed' and m.s ~= 'cancelled' then
    return fail('invalid_transition', 'only a failed or cancelled job can be retried; it is '
      .. shown_state(m, now))
  end
  local plain, missing = unend({id}, {rec})
  if missing then return missing end
  if #plain > 0 then requeue({id}, {h.p}, {h.o}, m.s, {m.k}) end
  flow_apply(now)
  commit()
  return cjson.encode({now = now, j = flat_record(records(Q, {id})[1])})
end

local ids = redis.call('ZRANGE', Q.state.failed, 0, plan.limit - 1)
local recs = records(Q, ids)
local found, prios, owners, tokens, gone = {}, {}, {}, {}, {}
local live, live_recs = {}, {}
for i, id in ipairs(ids) do
  if recs[i][1] and recs[i][2] then live[#live + 1] = id; live_recs[#live_recs + 1] = recs[i] end
end
local plain, missing = unend(live, live_recs)
if missing then return missing end
local keep = {}
for _, i in ipairs(plain) do keep[live[i]] = true end
for i, id in ipairs(ids) do
  local rec = recs[i]
  if rec[1] and rec[2] and not keep[id] then
    -- waits for its children again (flow_apply moves it)
  elseif rec[1] and rec[2] then
    local h = head(rec[1])
    found[#found + 1] = id
    prios[#prios + 1] = h.p
    owners[#owners + 1] = h.o
    tokens[#tokens + 1] = unpack_m(rec[2]).k
  else
    gone[#gone + 1] = id -- an index entry whose record is gone: drop it
  end
end
zrem(Q.state.failed, gone)
if #found > 0 then requeue(found, prios, owners, 'failed', tokens) end
flow_apply(now)
commit()
return cjson.encode(#found)
