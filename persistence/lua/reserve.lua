-- reserve.lua: decide one online order at one location, all lines or none, and record its event
-- in the same atomic step (a decrement never exists without its event, nor an event without it).
--
-- KEYS[1]     order record   <prefix>{L<loc>}:o:<orderId>   (hash: st = A|C, j = order JSON)
-- KEYS[2]     event stream   <prefix>{L<loc>}:ev
--             (the event: v=1, t=R, o, l, j; persistence/src/formats.rs reads it)
-- KEYS[3..]   stock keys     <prefix>{L<loc>}:s:<productId>, one per line, in product order
-- ARGV[1]     order id
-- ARGV[2]     order JSON (the answer; the consumer persists it to MySQL)
-- ARGV[3]     lines as "productId:quantity,..." (for the event)
-- ARGV[4..]   quantity of each stock key, in KEYS order
--
-- Returns:
--   {1}              accepted: every key decremented, record and event written
--   {0, i, have}     short: line i (1-based) has only `have` units; nothing changed
--   {-1, i}          not loaded: the stock key of line i is missing; nothing changed
--   {2}              duplicate: this order id was decided before; nothing changed
--
-- A missing stock key means "not loaded", never zero and never unlimited: the caller loads it from
-- MySQL and asks again.

-- An order id decided before is a duplicate whatever the stock says now (a retry of an order that
-- took the last unit is that order, not a shortage).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {2}
end
for i = 3, #KEYS do
  local have = redis.call('GET', KEYS[i])
  if not have then
    return {-1, i - 2}
  end
  have = tonumber(have)
  if have < tonumber(ARGV[i + 1]) then
    return {0, i - 2, have}
  end
end
for i = 3, #KEYS do
  redis.call('DECRBY', KEYS[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 'st', 'A', 'j', ARGV[2])
redis.call('XADD', KEYS[2], '*', 'v', '1', 't', 'R', 'o', ARGV[1], 'l', ARGV[3], 'j', ARGV[2])
return {1}
