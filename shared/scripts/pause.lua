-- pause.lua: pause or resume a queue. A paused queue has no due key, so claims and ticks skip it;
-- resuming recomputes its due time.
-- KEYS: the queue's block (lib.lua block).
-- ARGV[1] now ms or -1, ARGV[2] JSON plan {paused: true to pause, false to resume}.
-- Returns JSON true when paused, false when running.
local Q = block(0)
local s = meta(Q, now_ms(ARGV[1]))
if cjson.decode(ARGV[2]).paused then
  mset(s, 'paused', '1')
  s.due = nil
  commit()
  return cjson.encode(true)
end
mset(s, 'paused', nil)
-- Due now if anything waits (a claim that finds the queue full or rate-limited settles the time).
refresh_due(s, redis.call('ZCARD', Q.state.waiting) > 0, nil, false)
commit()
return cjson.encode(false)
