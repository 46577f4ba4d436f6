-- cycle.lua: a consumer's refill in one round trip: record outcomes (finish.lua), then claim from a queue
-- (claim.lua), each part with its own arguments. One atomic call, so no reply is lost between the two and
-- the claim sees the slots the outcomes freed.
-- KEYS: none (keys derive from the prefix; see lib.lua).
-- ARGV[1] prefix, ARGV[2] now ms or -1, ARGV[3] finish's plan (its ARGV[3]), ARGV[4..] claim's ARGV[3..].
-- Returns JSON [finish's reply, claim's reply].
local claim_argv = {ARGV[1], ARGV[2]}
for i = 4, #ARGV do claim_argv[#claim_argv + 1] = ARGV[i] end
local finished = finish_part({ARGV[1], ARGV[2], ARGV[3]})
return '[' .. finished .. ',' .. claim_part(claim_argv) .. ']'
