-- cancel.lua: cancel one Redis-path order that Redis still holds, exactly once, and give its
-- units back.
--
-- KEYS[1]     order record   <prefix>{L<loc>}:o:<orderId>
-- KEYS[2]     event stream   <prefix>{L<loc>}:ev
--             (the event: v=1, t=C, o, l; persistence/src/formats.rs reads it)
-- KEYS[3..]   stock keys of the order's lines
-- ARGV[1]     order id
-- ARGV[2]     lines as "productId:quantity,..."
-- ARGV[3..]   quantity of each stock key, in KEYS order
--
-- Returns:
--   {1}    cancelled now: units given back, cancel event written
--   {0}    was already cancelled: nothing changed
--   {-1}   no record: the order is in MySQL only (its record expired after it was persisted), or
--          unknown; the caller cancels it in MySQL. Nothing changed
--   {-2}   the consumer rejected it (st = X): nothing was sold, so nothing comes back; the caller
--          reads MySQL. Nothing changed
--
-- A missing stock key is not incremented: loading it later reads MySQL plus the events still in
-- the stream, and this cancel event is one of them. The record loses its expiry so it outlives the
-- cancel event; the consumer's acknowledgement sets it again.

local st = redis.call('HGET', KEYS[1], 'st')
if st == 'C' then
  return {0}
end
if not st then
  return {-1}
end
if st == 'X' then
  return {-2}
end
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], ARGV[i])
  end
end
redis.call('HSET', KEYS[1], 'st', 'C')
redis.call('PERSIST', KEYS[1])
redis.call('XADD', KEYS[2], '*', 'v', '1', 't', 'C', 'o', ARGV[1], 'l', ARGV[2])
return {1}
