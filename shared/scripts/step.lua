-- step.lua: record the result of a durable step of a running job (JobContext.step), fenced by its lease
-- token like an outcome: a stale attempt (its lease expired and the job re-claimed, or the job moved on)
-- records nothing. A step already recorded under that name stays as it is (a re-sent call is harmless).
-- The steps go in the record part "<id>:s" (lib.lua has_step), which every claim reads with the record.
-- KEYS: the queue's block (lib.lua block).
-- ARGV[1] unused (the call needs no clock), ARGV[2] JSON plan (shared/scriptcalls.py StepPlan)
--   {id: unique id, k: token, n: step name as JSON text, r: result JSON text}.
-- Returns JSON [ok 0|1, steps recorded]; error too_large past LIMITS.steps steps or LIMITS.step_bytes.
local Q = block(0)
local plan = cjson.decode(ARGV[2])
local got = redis.call('HMGET', Q.jobs, plan.id .. ':m', plan.id .. ':s')
local m = unpack_m(got[1])
local steps = got[2] or ''
if m.s ~= 'active' or m.k ~= plan.k then return cjson.encode({0, step_count(steps)}) end
if has_step(steps, plan.n) then return cjson.encode({1, step_count(steps)}) end
local count = step_count(steps)
if count >= LIMITS.steps then return fail('too_large', 'the job has ' .. count .. ' steps, the most it may record') end
local entry = plan.n .. '\t' .. plan.r .. '\n'
if #steps + #entry > LIMITS.step_bytes then
  return fail('too_large', 'the job\'s steps would exceed ' .. LIMITS.step_bytes .. ' bytes')
end
redis.call('HSET', Q.jobs, plan.id .. ':s', steps .. entry)
return cjson.encode({1, count + 1})
