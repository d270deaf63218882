-- lease.lua: renew or release a job lease, only if this instance still holds it.
--
-- KEYS[1]   lease key <prefix>lease:<job>
-- ARGV[1]   holder (this instance's id)
-- ARGV[2]   'renew' or 'release'
-- ARGV[3]   lease time in milliseconds (for 'renew')
--
-- Returns 1 if done, 0 if the lease is held by someone else or has expired.
-- (Taking a job lease is a plain SET NX PX; an idempotency claim's lease is taken by claim.lua.)

if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == 'renew' then
  return redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return redis.call('DEL', KEYS[1])
