-- adjust.lua: apply a MySQL-first change (DB-lock order or cancel, POS sale or return, operator
-- adjustment, an operator's retry of a rejected order) to Redis as a change, never as an absolute
-- value, so orders in flight are kept. The caller holds the MySQL row locks of these stock rows
-- while it runs this in 'check' mode, after every MySQL statement of its transaction and just
-- before the commit.
--
-- KEYS[1..]   stock keys <prefix>{L<loc>}:s:<productId>
-- ARGV[1]     'check': refuse a decrement the key cannot cover;
--             'fact': an operator's change of what is on the shelf: load missing keys first, as
--             'check' does, but never refuse (the figure may go below zero: a real shortage);
--             'force': apply every change as it is (taking back a change whose commit failed:
--             the result may be negative, which sells nothing until a re-sync)
-- ARGV[2..n+1] signed delta for each of the n keys
-- ARGV[n+2..] ('check', optional) the floor of each key: the figure a decrement must leave (an
--             online order's safety stock; 0 when absent)
--
-- Returns:
--   {1}            applied to every key
--   {0, i, have}   ('check') key i holds `have`, and its negative delta would take it below
--                  its floor (the units are reserved by orders MySQL has not seen yet); nothing
--                  changed
--   {-1, i}        ('check') key i is missing and its delta is negative: load it first; nothing
--                  changed
--
-- A missing key is never created here: a later load reads MySQL, which holds the change by then
-- (loading waits for the caller's row locks). Increments are never refused, whatever the key
-- holds.

local check = ARGV[1] == 'check'
local n = #KEYS
if check or ARGV[1] == 'fact' then
  for i = 1, n do
    local delta = tonumber(ARGV[i + 1])
    if delta < 0 then
      local have = redis.call('GET', KEYS[i])
      if not have then
        return {-1, i}
      end
      local floor = tonumber(ARGV[n + 1 + i] or '0')
      if check and tonumber(have) + delta < floor then
        return {0, i, tonumber(have)}
      end
    end
  end
end
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], ARGV[i + 1])
  end
end
return {1}
