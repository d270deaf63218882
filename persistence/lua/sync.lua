-- sync.lua: set stock keys from MySQL at a consistent point: load missing keys, or repair keys
-- that drifted. The caller holds MySQL share locks on these stock rows, so no MySQL write to them
-- can commit while this runs.
--
-- KEYS[1]     event stream <prefix>{L<loc>}:ev (events accepted in Redis, not yet known persisted)
-- KEYS[2..n+1] stock keys <prefix>{L<loc>}:s:<productId> (n products)
-- KEYS[n+2]   the location's epoch marker <prefix>{L<loc>}:epoch, set to ARGV[5] if missing: the
--             location's data is now in Redis, and a marker that goes missing (or comes back with
--             another time) later means Redis lost it
-- ARGV[1]     'load' (set missing keys only) or 'repair' (set every key whose value differs)
-- ARGV[2]     product ids, comma separated, in KEYS[2..] order
-- ARGV[3]     MySQL on-hand values, comma separated, same order
-- ARGV[4]     events already applied in MySQL, as "<orderId>:<R|C>" comma separated
-- ARGV[5]     now, as the marker's value (RFC 3339)
--
-- expected = on_hand - (units of reservations still in the stream and not applied)
--                    + (units of cancels still in the stream and not applied)
--
-- Returns two entries: a flat list, four entries per key: present (1/0), before (0 when missing),
-- expected, changed (1/0); then the location's epoch marker (as set now, or as it was).

local products = {}
local index = {}
local p = 1
for id in string.gmatch(ARGV[2], '[^,]+') do
  products[p] = id
  index[id] = p
  p = p + 1
end
local expected = {}
p = 1
for v in string.gmatch(ARGV[3], '[^,]+') do
  expected[p] = tonumber(v)
  p = p + 1
end
local applied = {}
for e in string.gmatch(ARGV[4], '[^,]+') do
  applied[e] = true
end

for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
  local f = entry[2]
  local t, o, l
  for j = 1, #f, 2 do
    if f[j] == 't' then t = f[j + 1] elseif f[j] == 'o' then o = f[j + 1] elseif f[j] == 'l' then l = f[j + 1] end
  end
  -- Only reservations and cancels move stock; an event of any other kind is ignored.
  if (t == 'R' or t == 'C') and o and l and not applied[o .. ':' .. t] then
    local sign = (t == 'R') and -1 or 1
    for pid, qty in string.gmatch(l, '(%d+):(%d+)') do
      local k = index[pid]
      if k then
        expected[k] = expected[k] + sign * tonumber(qty)
      end
    end
  end
end

local out = {}
for k = 1, #products do
  local key = KEYS[k + 1]
  local before = redis.call('GET', key)
  local changed = 0
  local present = 1
  if not before then
    redis.call('SET', key, expected[k])
    changed = 1
    present = 0
    before = 0
  else
    before = tonumber(before)
    if ARGV[1] == 'repair' and before ~= expected[k] then
      redis.call('SET', key, expected[k])
      changed = 1
    end
  end
  out[#out + 1] = present
  out[#out + 1] = before
  out[#out + 1] = expected[k]
  out[#out + 1] = changed
end
redis.call('SET', KEYS[#products + 2], ARGV[5], 'NX')
return {out, redis.call('GET', KEYS[#products + 2])}
