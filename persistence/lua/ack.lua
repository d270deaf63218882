-- ack.lua: after the consumer committed a batch to MySQL, acknowledge and remove its events, so
-- the stream holds only events not yet known persisted.
--
-- KEYS[1]     event stream <prefix>{L<loc>}:ev
-- KEYS[2..]   order record of each event
-- ARGV[1]     consumer group
-- ARGV[2]     seconds an order record stays for status look-ups once persisted
-- ARGV[3..]   "<streamId>:<R|C>" of each event, in KEYS[2..] order
--
-- Returns the number of events acknowledged.
--
-- A record whose reservation was persisted expires only if it was not cancelled meanwhile: a
-- cancelled record must outlive its cancel event (see cancel.lua).

local acked = 0
for i = 3, #ARGV do
  local id, t = string.match(ARGV[i], '^(.+):([RC])$')
  acked = acked + redis.call('XACK', KEYS[1], ARGV[1], id)
  redis.call('XDEL', KEYS[1], id)
  local record = KEYS[i - 1]
  if t == 'C' or redis.call('HGET', record, 'st') == 'A' then
    redis.call('EXPIRE', record, ARGV[2])
  end
end
return acked
