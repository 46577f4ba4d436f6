-- schedule.lua: create, replace or delete a schedule of the queue, keeping its next slot in the queue's
-- schedule_times, the owner's index and the queue's next schedule slot ('ns'), and so its due time.
-- Fenced by version: a write that read an older version of the record (a firing or another edit came
-- between) changes nothing and fails, so the caller reads again.
-- KEYS: the queue's block (lib.lua block), then the owner's index of schedules in the queue.
-- ARGV[1] now ms or -1, ARGV[2] JSON plan (shared/scriptcalls.py SchedulePlan): {op: "put" | "delete",
-- id, v: the version read (0: a new schedule), rec: the record's JSON text (put), next: its next slot ms
-- or null (put), cap: the most schedules an owner keeps in the queue}.
-- Returns JSON true. Fails not_found (no such schedule), invalid_transition (its version is not v),
-- invalid (a new schedule over the cap).
local now = now_ms(ARGV[1])
local Q = block(0)
local index = KEYS[BLOCK_SIZE + 1]
local plan = cjson.decode(ARGV[2])
local held = redis.call('HGET', Q.schedules, plan.id)
if plan.v == 0 then
  if held then return fail('invalid_transition', 'schedule exists') end
  if redis.call('ZCARD', index) >= plan.cap then
    return fail('invalid', 'an owner keeps at most ' .. plan.cap .. ' schedules in a queue')
  end
elseif not held then
  return fail('not_found', 'schedule not found')
elseif cjson.decode(held).version ~= plan.v then
  return fail('invalid_transition', 'the schedule changed; read it again')
end
local s = meta(Q, now)
if plan.op == 'delete' then
  redis.call('HDEL', Q.schedules, plan.id)
  redis.call('ZREM', Q.schedule_times, plan.id)
  redis.call('ZREM', index, plan.id)
else
  redis.call('HSET', Q.schedules, plan.id, plan.rec)
  redis.call('ZADD', index, 0, plan.id)
  if plan.next == cjson.null then
    redis.call('ZREM', Q.schedule_times, plan.id)
  else
    redis.call('ZADD', Q.schedule_times, n2s(plan.next), plan.id)
  end
end
settle_schedules(s)
-- As a resume does: due now if jobs wait (a claim settles a full or rate-limited queue), else by the
-- earliest of delayed jobs, leases and schedules.
refresh_due(s, redis.call('ZCARD', Q.state.waiting) > 0, nil, false)
commit()
return cjson.encode(true)
