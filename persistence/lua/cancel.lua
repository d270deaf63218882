-- cancel.lua: cancel one Redis-path order exactly once and give its units back.
--
-- KEYS[1]     order record   <prefix>{L<loc>}:o:<orderId>
-- KEYS[2]     event stream   <prefix>{L<loc>}:ev
-- KEYS[3..]   stock keys of the order's lines
-- ARGV[1]     order id
-- ARGV[2]     lines as "productId:quantity,..."
-- ARGV[3]     order JSON to restore the record from when it has expired (the order is CONFIRMED in
--             MySQL), or '' when the caller knows of no such order
-- ARGV[4..]   quantity of each stock key, in KEYS order
--
-- Returns:
--   {1}    cancelled now: units given back, cancel event written
--   {0}    was already cancelled: nothing changed
--   {-1}   unknown order (no record and no JSON given): nothing changed
--
-- A missing stock key is not incremented: loading it later reads MySQL plus the events still in
-- the stream, and this cancel event is one of them. The record loses its expiry so it outlives the
-- cancel event; the consumer's acknowledgement sets it again.

local st = redis.call('HGET', KEYS[1], 'st')
if st == 'C' then
  return {0}
end
if not st then
  if ARGV[3] == '' then
    return {-1}
  end
  redis.call('HSET', KEYS[1], 'j', ARGV[3])
end
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], ARGV[i + 1])
  end
end
redis.call('HSET', KEYS[1], 'st', 'C')
redis.call('PERSIST', KEYS[1])
redis.call('XADD', KEYS[2], '*', 't', 'C', 'o', ARGV[1], 'l', ARGV[2])
return {1}
