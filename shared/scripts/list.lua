-- list.lua: one page of jobs, newest first, in one of two modes.
-- "index": an owner's or a tag's listing index (scores 0, members ordered by id, so by time), after a
--   cursor id, filtered by state, type and owner; scans at most 1000 entries per call, so a sparse
--   filter may return a short page with a cursor to continue from. Entries whose job hash has expired
--   are dropped from the index on the way.
-- "queue": a queue's state indexes (one state, or all in lib.lua STATES order): waiting in claim order
--   (priority, then FIFO, as BullMQ's getWaiting), delayed by run-at (next due first), the others
--   newest first (active: latest lease deadline; terminal: newest finished); the cursor is
--   "<state number>.<offset>".
-- KEYS: none (the index key is built by shared/keys.py and passed in ARGV[4]).
-- ARGV[1] prefix, ARGV[2] now ms or -1, ARGV[3] mode "index" | "queue", ARGV[4] index key | queue,
-- ARGV[5] cursor or "", ARGV[6] limit, ARGV[7] state or "", ARGV[8] type or "", ARGV[9] owner or "".
-- Returns JSON {now, j: [[id, flat job hash], ...], c: next cursor or ""}.
local now = now_ms()
local mode, target, cursor, limit = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local state, type_, owner = ARGV[7], ARGV[8], ARGV[9]
local found, gone = {}, {}

-- nil: the hash is gone; false: filtered out; else the flat hash.
local function load(id, check_state)
  local flat = redis.call('HGETALL', k_job(id))
  if #flat == 0 then return nil end
  local job = hash_to_table(flat)
  if check_state and state ~= '' and shown_state(unpack_m(job.m), now) ~= state then return false end
  if type_ ~= '' then
    local cut = string.find(job.d, ',"y":', 1, true)
    if string.sub(job.d, cut, cut + 6 + #type_) ~= ',"y":"' .. type_ .. '"' then return false end
  end
  if owner ~= '' and head(job.d).o ~= owner then return false end
  return flat
end

local next_cursor = ''
if mode == 'index' then
  local max = '+'
  if cursor ~= '' then max = '(' .. cursor end
  local scanned, last, exhausted = 0, '', false
  while #found < limit and scanned < 1000 do
    local ids = redis.call('ZREVRANGEBYLEX', target, max, '-', 'LIMIT', 0, math.min(200, 1000 - scanned))
    if #ids == 0 then exhausted = true break end
    for _, id in ipairs(ids) do
      scanned = scanned + 1
      last = id
      local flat = load(id, true)
      if flat == nil then gone[#gone + 1] = id elseif flat then found[#found + 1] = {id, flat} end
      if #found >= limit then break end
    end
    max = '(' .. last
  end
  zrem(target, gone)
  if not exhausted and last ~= '' then
    if #redis.call('ZREVRANGEBYLEX', target, '(' .. last, '-', 'LIMIT', 0, 1) > 0 then next_cursor = last end
  end
else
  local si, offset = 1, 0
  if cursor ~= '' then
    si, offset = string.match(cursor, '^(%d+)%.(%d+)$')
    si, offset = tonumber(si), tonumber(offset)
  end
  local scanned = 0
  while si <= #STATES and #found < limit and scanned < 1000 do
    local s = STATES[si]
    if state == '' or state == s then
      local order = 'ZREVRANGE'
      if s == 'waiting' or s == 'delayed' then order = 'ZRANGE' end -- the order they will run in
      local want = limit - #found
      local ids = redis.call(order, k_state(target, s), offset, offset + want - 1)
      for _, id in ipairs(ids) do
        scanned = scanned + 1
        offset = offset + 1
        local flat = load(id, false)
        if flat then found[#found + 1] = {id, flat} end
      end
      -- A short read means the state is exhausted; a full one whose entries the filters left out is not.
      if #ids < want then si, offset = si + 1, 0 end
    else
      si, offset = si + 1, 0
    end
  end
  if si <= #STATES and (state == '' or state == STATES[si]) then next_cursor = si .. '.' .. offset end
end
return cjson.encode({now = now, j = found, c = next_cursor})
