-- reserve.lua: decide one online order at one location, all lines or none, and record its event
-- in the same atomic step (a decrement never exists without its event, nor an event without it).
--
-- KEYS[1]     order record   <prefix>{L<loc>}:o:<orderId>   (hash: st = A|C, j = order JSON)
-- KEYS[2]     event stream   <prefix>{L<loc>}:ev
--             (the event: v=1, t=R, o, l, j; persistence/src/formats.rs reads it)
-- KEYS[3..n+2] stock keys    <prefix>{L<loc>}:s:<productId>, one per line, in product order
-- KEYS[n+3]   safety stock  <prefix>{L<loc>}:safety (hash: v = 1, '*' = the location's default,
--             '<productId>' = a product's own buffer); optional: without it no buffer is kept
-- ARGV[1]     order id
-- ARGV[2]     order JSON (the answer; the consumer persists it to MySQL)
-- ARGV[3]     lines as "productId:quantity,..." (for the event)
-- ARGV[4..]   quantity of each stock key, in KEYS order (n = #ARGV - 3 lines)
--
-- An online order may take what is sellable online: the key's figure (available) minus the
-- product's safety stock, else the location's default, else 0 (the rule is defined once, in
-- persistence/src/orders/ledger.rs, `Need::Sellable`; this applies it to the figures Redis holds).
--
-- Returns:
--   {1}              accepted: every key decremented, record and event written
--   {0, i, have}     short: line i (1-based) has only `have` units sellable; nothing changed
--   {-1, i}          not loaded: the stock key of line i (or the safety hash) is missing;
--                    nothing changed
--   {2}              duplicate: this order id was decided before; nothing changed
--
-- A missing stock key means "not loaded", never zero and never unlimited: the caller loads it from
-- MySQL and asks again.

-- An order id decided before is a duplicate whatever the stock says now (a retry of an order that
-- took the last unit is that order, not a shortage).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {2}
end
local n = #ARGV - 3
local buffer = {}
for i = 1, n do
  buffer[i] = 0
end
if #KEYS > n + 2 then
  -- One read of the hash: its version (absent: not loaded), the default, each line's own.
  local fields = {'v', '*'}
  for product in string.gmatch(ARGV[3], '(%d+):%d+') do
    fields[#fields + 1] = product
  end
  local got = redis.call('HMGET', KEYS[n + 3], unpack(fields))
  if not got[1] then
    return {-1, 1}
  end
  local default = tonumber(got[2] or '0')
  for i = 1, n do
    buffer[i] = tonumber(got[i + 2] or default)
  end
end
for i = 1, n do
  local have = redis.call('GET', KEYS[i + 2])
  if not have then
    return {-1, i}
  end
  have = tonumber(have) - buffer[i]
  if have < tonumber(ARGV[i + 3]) then
    return {0, i, math.max(have, 0)}
  end
end
for i = 1, n do
  redis.call('DECRBY', KEYS[i + 2], ARGV[i + 3])
end
redis.call('HSET', KEYS[1], 'st', 'A', 'j', ARGV[2])
redis.call('XADD', KEYS[2], '*', 'v', '1', 't', 'R', 'o', ARGV[1], 'l', ARGV[3], 'j', ARGV[2])
return {1}
