-- reject.lua: mark Redis-path orders that MySQL cannot take as sold as rejected, before the
-- consumer commits the rejection, so that no cancel gives back units that were never sold.
--
-- KEYS[1..]   order records <prefix>{L<loc>}:o:<orderId>
-- ARGV[1..]   the reason of each, in KEYS order
--
-- Returns one entry per record:
--    1  rejected now or before (st = X, reason in field r)
--    0  cancelled first (st = C): the cancel gave the units back, so the order ends CANCELLED
--   -1  no record (Redis lost it): rejected in MySQL all the same

local out = {}
for i = 1, #KEYS do
  local st = redis.call('HGET', KEYS[i], 'st')
  if st == 'C' then
    out[i] = 0
  elseif not st then
    out[i] = -1
  else
    redis.call('HSET', KEYS[i], 'st', 'X', 'r', ARGV[i])
    out[i] = 1
  end
end
return out
