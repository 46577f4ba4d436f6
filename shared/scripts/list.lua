-- list.lua (read-only): one page of a queue's jobs, newest first, in one of two modes.
-- "index": an owner's or a tag's listing index of the queue (scores 0, unique ids, so ordered by time),
--   after a cursor id, filtered by state, type and owner; scans at most 1000 entries per call, so a
--   sparse filter may return a short page. Entries whose record is gone (trimmed by retention) are
--   skipped. The engine merges the pages of every queue an owner has jobs in (Engine.list_jobs).
-- "queue": the queue's state indexes (one state, or all in lib.lua STATES order, then waiting-children):
--   waiting in claim order
--   (priority, then FIFO, as BullMQ's getWaiting), delayed by run-at (next due first), the others
--   newest first (active: latest lease deadline; terminal: newest finished); the cursor is
--   "<state number>.<offset>".
-- KEYS: the queue's block (lib.lua block), then for "index" the listing index.
-- ARGV[1] now ms or -1, ARGV[2] JSON plan {mode: "index" | "queue", cursor: "" for the first page, limit,
-- state, type, owner: "" for any}.
-- Returns JSON {now, j: [[unique id, flat record], ...], c: next cursor or ""}; for "index", c is the
-- last id scanned when the index holds more, so a merged page never passes entries not yet scanned.
local now = now_ms(ARGV[1])
local Q = block(0)
local plan = cjson.decode(ARGV[2])
local mode, cursor, limit = plan.mode, plan.cursor, plan.limit
local state, type_, owner = plan.state, plan.type, plan.owner
local found = {}

-- false when filtered out (or gone), else the flat record.
local function load(ids, check_state)
  local recs = records(Q, ids)
  local out = {}
  for i, rec in ipairs(recs) do
    local keep = rec[1] and rec[2]
    if keep and check_state and state ~= '' and shown_state(unpack_m(rec[2]), now) ~= state then keep = false end
    if keep and type_ ~= '' then
      local cut = string.find(rec[1], ',"y":', 1, true)
      keep = string.sub(rec[1], cut, cut + 6 + #type_) == ',"y":"' .. type_ .. '"'
    end
    if keep and owner ~= '' and head(rec[1]).o ~= owner then keep = false end
    out[i] = keep and flat_record(rec) or false
  end
  return out
end

local next_cursor = ''
if mode == 'index' then
  local index = KEYS[BLOCK_SIZE + 1]
  local max = '+'
  if cursor ~= '' then max = '(' .. cursor end
  local scanned, last, exhausted = 0, '', false
  while #found < limit and scanned < 1000 do
    local ids = redis.call('ZREVRANGEBYLEX', index, max, '-', 'LIMIT', 0, math.min(200, 1000 - scanned))
    if #ids == 0 then exhausted = true break end
    local flats = load(ids, true)
    for i, id in ipairs(ids) do
      scanned = scanned + 1
      last = id
      if flats[i] then found[#found + 1] = {id, flats[i]} end
      if #found >= limit then break end
    end
    max = '(' .. last
  end
  if not exhausted and last ~= '' then
    if #redis.call('ZREVRANGEBYLEX', index, '(' .. last, '-', 'LIMIT', 0, 1) > 0 then next_cursor = last end
  end
else
  local si, offset = 1, 0
  if cursor ~= '' then
    si, offset = string.match(cursor, '^(%d+)%.(%d+)$')
    si, offset = tonumber(si), tonumber(offset)
  end
  local scanned = 0
  local listed = {unpack(STATES)}
  listed[#listed + 1] = 'waiting-children'
  while si <= #listed and #found < limit and scanned < 1000 do
    local st = listed[si]
    if state == '' or state == st then
      local order = 'ZREVRANGE'
      if st == 'waiting' or st == 'delayed' then order = 'ZRANGE' end -- the order they will run in
      local want = limit - #found
      local ids = redis.call(order, Q.state[st], offset, offset + want - 1)
      local flats = load(ids, false)
      for i, id in ipairs(ids) do
        scanned = scanned + 1
        offset = offset + 1
        if flats[i] then found[#found + 1] = {id, flats[i]} end
      end
      -- A short read means the state is exhausted; a full one whose entries the filters left out is not.
      if #ids < want then si, offset = si + 1, 0 end
    else
      si, offset = si + 1, 0
    end
  end
  if si <= #listed and (state == '' or state == listed[si]) then next_cursor = si .. '.' .. offset end
end
return cjson.encode({now = now, j = found, c = next_cursor})
