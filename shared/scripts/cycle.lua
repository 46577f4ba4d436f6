-- cycle.lua: a consumer's refill in one round trip: record outcomes (finish.lua), then claim from the same
-- queue (claim.lua), each part with its own arguments. One atomic call, so no reply is lost between the
-- two and the claim sees the slots the outcomes freed; the parts share one read and one write of the
-- queue's meta and one event entry (lib.lua commit).
-- KEYS: the queue's block (lib.lua block).
-- ARGV[1] now ms or -1, ARGV[2] finish's plan, ARGV[3] claim's plan.
-- Returns JSON [finish's reply, claim's reply].
local now = n2s(now_ms(ARGV[1]))
local finished = finish_part({now, ARGV[2]})
if type(finished) == 'table' then return finished end -- an error reply (flow.lua needs_queues)
local claimed = claim_part({now, ARGV[3]})
if type(claimed) == 'table' then -- the claim stopped before writing: keep the finish, ask again
  commit()
  return claimed
end
commit()
return '[' .. finished .. ',' .. claimed .. ']'
