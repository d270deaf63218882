-- safety.lua: set a location's copy of the safety stock from MySQL, writing only what differs: a
-- re-sync (every batch of a reconciliation pass) that finds the copy right writes nothing — no
-- entry in the append-only file (and so no fsync under `appendfsync always`), nothing for the
-- replicas, no invalidation for the stock mirror.
--
-- KEYS[1]   the safety hash <prefix>{L<loc>}:safety (v = the layout's version, '*' = the
--           location's default, a field per product that has a buffer of its own)
-- ARGV[1]   the layout's version
-- ARGV[2]   the location's default
-- ARGV[3]   products with a buffer of their own, '<productId>:<units>' comma separated ('' none)
-- ARGV[4]   products without one, comma separated ('' none): their fields are removed
--
-- Returns the number of fields set or removed.

local key = KEYS[1]
local changed = 0
local function put(field, value)
  if redis.call('HGET', key, field) ~= value then
    redis.call('HSET', key, field, value)
    changed = changed + 1
  end
end
put('v', ARGV[1])
put('*', ARGV[2])
for product, units in string.gmatch(ARGV[3], '(%d+):(-?%d+)') do
  put(product, units)
end
-- HDEL takes many fields; a few hundred at a time keeps unpack within Lua's stack.
local gone = {}
for product in string.gmatch(ARGV[4], '%d+') do
  gone[#gone + 1] = product
  if #gone == 500 then
    changed = changed + redis.call('HDEL', key, unpack(gone))
    gone = {}
  end
end
if #gone > 0 then
  changed = changed + redis.call('HDEL', key, unpack(gone))
end
return changed
