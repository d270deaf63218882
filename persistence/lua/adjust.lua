-- adjust.lua: apply a MySQL-first change (DB-lock order or cancel, POS sale or return, operator
-- adjustment) to Redis as a change, never as an absolute value, so orders in flight are kept.
-- The caller holds the MySQL row locks of these stock rows while it runs this.
--
-- KEYS[1..]   stock keys <prefix>{L<loc>}:s:<productId>
-- ARGV[1..]   signed delta for each key
--
-- Returns:
--   {1}            applied to every key
--   {0, i, have}   key i holds `have`, and its delta would take it below zero (the units are
--                  reserved by orders MySQL has not seen yet); nothing changed
--   {-1, i}        key i is missing and its delta is negative: load it first; nothing changed
--
-- A missing key with a non-negative delta is skipped: a later load reads MySQL, which holds the
-- change by then (loading waits for the caller's row locks).

for i = 1, #KEYS do
  local delta = tonumber(ARGV[i])
  local have = redis.call('GET', KEYS[i])
  if not have then
    if delta < 0 then
      return {-1, i}
    end
  elseif tonumber(have) + delta < 0 then
    return {0, i, tonumber(have)}
  end
end
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], ARGV[i])
  end
end
return {1}
