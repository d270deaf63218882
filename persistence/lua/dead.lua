-- dead.lua: move one event that cannot be persisted, whatever is tried, to the location's
-- dead-letter stream with its error, so that every other event flows on.
--
-- KEYS[1]     event stream        <prefix>{L<loc>}:ev
-- KEYS[2]     dead-letter stream  <prefix>{L<loc>}:dead
-- KEYS[3]     order record of the event (may not exist)
-- ARGV[1]     consumer group
-- ARGV[2]     stream id of the event
-- ARGV[3]     the error
-- ARGV[4]     for a reservation: the rejection reason to give its order (st A -> X, and d = 1);
--             '' for any other event
--
-- Returns 1 if the event was moved, 0 if it was no longer in the stream.

local entry = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if not entry[1] then
  return 0
end
local fields = entry[1][2]
fields[#fields + 1] = 'id'
fields[#fields + 1] = ARGV[2]
fields[#fields + 1] = 'error'
fields[#fields + 1] = ARGV[3]
redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('XDEL', KEYS[1], ARGV[2])
if ARGV[4] ~= '' and redis.call('HGET', KEYS[3], 'st') == 'A' then
  redis.call('HSET', KEYS[3], 'st', 'X', 'r', ARGV[4])
end
-- A reservation that went here never reaches MySQL: a cancel event of its order must not wait for
-- it (the consumer acknowledges such a cancel without effect).
if ARGV[4] ~= '' and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HSET', KEYS[3], 'd', '1')
end
return 1
