-- ack.lua: after the consumer committed a batch to MySQL, acknowledge and remove its events, so
-- the stream holds only events not yet known persisted.
--
-- KEYS[1]     event stream <prefix>{L<loc>}:ev
-- KEYS[2..]   order record of each event
-- ARGV[1]     consumer group
-- ARGV[2]     seconds an order record stays for status look-ups once persisted
-- ARGV[3..]   "<streamId>:<kind>" of each event, in KEYS[2..] order; any kind is acknowledged,
--             only R and C touch the order record
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

local ids = {}
for i = 3, #ARGV do
  local id, t = string.match(ARGV[i], '^(.+):(.)$')
  ids[#ids + 1] = id
  local record = KEYS[i - 1]
  if t == 'C' then
    redis.call('EXPIRE', record, ARGV[2])
  elseif t == 'R' then
    local st = redis.call('HGET', record, 'st')
    if st == 'A' or st == 'X' then
      redis.call('EXPIRE', record, ARGV[2])
    end
  end
end
if #ids == 0 then
  return 0
end
-- One XACK and one XDEL for all the events: each takes many ids.
local acked = redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
redis.call('XDEL', KEYS[1], unpack(ids))
return acked
