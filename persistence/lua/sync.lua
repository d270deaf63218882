-- sync.lua: set stock keys from MySQL at a consistent point: load missing keys, or repair keys
-- that drifted. The caller holds MySQL share locks on these stock rows, so no MySQL write to them
-- can commit while this runs.
--
-- The caller has read the location's event stream up to ARGV[4] (in pages, outside this script:
-- a script runs atomically, and scanning a long backlog here would stop the shard meanwhile), and
-- counted the reservations and cancels MySQL has not applied. Which events are applied is
-- decided in Rust alone (persistence/src/orders/applied.rs); this script re-derives none of it.
-- It adds the events appended since, with the effects ARGV[7] gives their kinds: none of them can
-- be applied in MySQL yet, as applying one writes a stock row the caller has locked.
--
-- KEYS[1]     event stream <prefix>{L<loc>}:ev (events accepted in Redis, not yet known persisted)
-- KEYS[2..n+1] stock keys <prefix>{L<loc>}:s:<productId> (n products)
-- KEYS[n+2]   the location's epoch marker <prefix>{L<loc>}:epoch, set to ARGV[5] if missing: the
--             location's data is now in Redis, and a marker that goes missing (or comes back with
--             another time) later means Redis lost it
-- ARGV[1]     'load' (set missing keys only: one SET ... NX GET each, Redis 7.0 or later) or
--             'repair' (set every key whose value differs)
-- ARGV[2]     product ids, comma separated, in KEYS[2..] order
-- ARGV[3]     per product, MySQL's on-hand minus the units of the unapplied reservations up to
--             ARGV[4], plus those of the unapplied cancels; comma separated, same order
-- ARGV[4]     the id of the last stream entry the caller read ('0-0': none)
-- ARGV[5]     now, as the marker's value (RFC 3339)
-- ARGV[6]     the marker as the caller saw it before it read the stream ('' when missing)
-- ARGV[7]     the stock effect of each event kind MySQL has not applied, '<t>:<sign>' comma
--             separated ('R:-1,C:1': a reservation's units are gone, a cancel's are back); an
--             entry of a kind not listed moves nothing
--
-- expected = ARGV[3] + the sum, over the entries after ARGV[4], of their kind's sign times their
--            units of the product
--
-- Returns three entries: 1, then a flat list, four entries per key: present (1/0), before (0
-- when missing), expected, changed (1/0); then the location's epoch marker (as set now, or as it
-- was). Or, when the marker is no longer the one the caller saw (Redis lost the location's data
-- while it read, or another instance loaded it): 0, an empty list, and the marker ('' when
-- missing) — nothing was changed, and the caller reads again.

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
local effect = {}
for t, sign in string.gmatch(ARGV[7], '([^:,]+):(-?%d+)') do
  effect[t] = tonumber(sign)
end
local seen = redis.call('GET', KEYS[#products + 2]) or ''
if seen ~= ARGV[6] then
  return {0, {}, seen}
end

for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '(' .. ARGV[4], '+')) do
  local f = entry[2]
  local t, l
  for j = 1, #f, 2 do
    if f[j] == 't' then t = f[j + 1] elseif f[j] == 'l' then l = f[j + 1] end
  end
  local sign = t and effect[t]
  if sign and l then
    for pid, qty in string.gmatch(l, '(%d+):(%d+)') do
      local k = index[pid]
      if k then
        expected[k] = expected[k] + sign * tonumber(qty)
      end
    end
  end
end

local out = {}
local load = ARGV[1] == 'load'
for k = 1, #products do
  local key = KEYS[k + 1]
  local before, present, changed
  if load then
    -- One call: set when missing, else answer the figure there and leave it.
    before = redis.call('SET', key, expected[k], 'NX', 'GET')
    if before then
      present, changed, before = 1, 0, tonumber(before)
    else
      present, changed, before = 0, 1, 0
    end
  else
    before = redis.call('GET', key)
    present, changed = 1, 0
    if not before then
      redis.call('SET', key, expected[k])
      present, changed, before = 0, 1, 0
    else
      before = tonumber(before)
      if before ~= expected[k] then
        redis.call('SET', key, expected[k])
        changed = 1
      end
    end
  end
  out[#out + 1] = present
  out[#out + 1] = before
  out[#out + 1] = expected[k]
  out[#out + 1] = changed
end
redis.call('SET', KEYS[#products + 2], ARGV[5], 'NX')
return {1, out, redis.call('GET', KEYS[#products + 2])}
