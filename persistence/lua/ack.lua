-- ack.lua: after the consumer committed a batch to MySQL, acknowledge and remove its events, so
-- the stream holds only events not yet known persisted.
--
-- KEYS[1]     event stream <prefix>{L<loc>}:ev
-- KEYS[2..]   order record of each event
-- ARGV[1]     consumer group
-- ARGV[2]     seconds an order record stays for status look-ups once persisted
-- ARGV[3]     the kind of each event, one character each, in KEYS[2..] order (e.g. "RRC"); any
--             kind is acknowledged, only R and C touch the order record
-- ARGV[4..]   the stream id of each event, in KEYS[2..] order
--
-- Returns the number of events acknowledged (fewer than given when some were no longer pending:
-- another consumer took them over, or Redis lost them).
--
-- The caller sends at most ACK_CHUNK events per call (persistence/src/scripts/ack.rs): the script
-- holds Redis while it runs, so a batch's acknowledgement goes in short calls that orders can
-- pass between.
--
-- A record expires once its order is in MySQL: after its reservation (R) unless it was cancelled
-- meanwhile (a cancelled record must outlive its cancel event, see cancel.lua), or after its
-- cancel (C). A rejected record (st = X) expires like an accepted one: MySQL holds the rejection.

local n = #ARGV - 3
if n == 0 then
  return 0
end
local kinds = ARGV[3]
local R, C = string.byte('R'), string.byte('C')
for i = 1, n do
  local t = string.byte(kinds, i)
  local record = KEYS[i + 1]
  if t == C then
    redis.call('EXPIRE', record, ARGV[2])
  elseif t == R then
    local st = redis.call('HGET', record, 'st')
    if st == 'A' or st == 'X' then
      redis.call('EXPIRE', record, ARGV[2])
    end
  end
end
-- One XACK and one XDEL for all the events: each takes many ids.
local acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 4))
redis.call('XDEL', KEYS[1], unpack(ARGV, 4))
return acked
