-- claim.lua: claim an Idempotency-Key, or take over an open claim nobody works on, in one atomic
-- step (a claim never exists without its lease, so no other request can take it over in between).
--
-- KEYS[1]   claim key   <prefix>idem:{<scope>:<key>}   (value: "2|<fingerprint>|<uuid>|<answer>")
-- KEYS[2]   its lease   <claim key>:lease               (value: the holder's token)
-- ARGV[1]   the request's fingerprint
-- ARGV[2]   the uuid a new claim fixes the order's id with
-- ARGV[3]   claim time to live, in seconds
-- ARGV[4]   the holder's token
-- ARGV[5]   lease time, in milliseconds
--
-- Returns:
--   {1, uuid}     claimed anew: the claim "2|<fingerprint>|<uuid>|" and its lease are set
--   {2, record}   taken over: the claim has this fingerprint and a uuid but no answer, and
--                 nobody held its lease; the lease is now the holder's
--   {0, record}   nothing changed: the claim is answered, has another fingerprint, or its lease
--                 is held by another request
-- (The record format is persistence/src/formats.rs's ClaimRecord: an answer is order JSON, so a
-- record ending in '|' has none.)

local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], '2|' .. ARGV[1] .. '|' .. ARGV[2] .. '|', 'EX', ARGV[3])
  redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5])
  return {1, ARGV[2]}
end
local open = '2|' .. ARGV[1] .. '|'
if #current > #open + 1 and string.sub(current, 1, #open) == open
    and string.sub(current, -1) == '|' then
  if redis.call('SET', KEYS[2], ARGV[4], 'NX', 'PX', ARGV[5]) then
    return {2, current}
  end
end
return {0, current}
