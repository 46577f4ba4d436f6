-- wake.lua: book a delayed wake-up of a consumer lane. A consumer run that ends with work due before
-- the next scheduled tick asks here whether to publish one: yes when no wake is pending for the lane or
-- the pending one is later than `at` (then `at` is recorded); no when one at or before `at` is pending.
-- A pending wake is forgotten once its time has passed (and its key expires then), so a wake that was
-- lost never blocks later ones.
-- KEYS[1] the lane's wake key.
-- ARGV[1] now ms or -1, ARGV[2] JSON plan {at: wake time, epoch ms}.
-- Returns JSON true (publish a wake-up for `at`) or false (one at or before `at` is already pending).
local now = now_ms(ARGV[1])
local key, at = KEYS[1], cjson.decode(ARGV[2]).at
local pending = tonumber(redis.call('GET', key))
if pending and pending > now and pending <= at then return cjson.encode(false) end
-- Kept until the wake's time (at least 1 ms: SET refuses a zero expiry).
redis.call('SET', key, n2s(at), 'PX', n2s(math.max(1, at - now)))
return cjson.encode(true)
