-- credential.lua: keep a checked channel key in Redis, or revoke it there.
--
-- KEYS[1]   the kept key <prefix>{cred}:ck:<hash>
-- KEYS[2]   the revoked mark <prefix>{cred}:ckr:<hash>
-- ARGV[1]   'keep' or 'revoke'
-- ARGV[2]   for 'keep': what to keep, '<keyId>:<channelId>'
--
-- 'keep' sets KEYS[1] unless the hash is marked revoked (a check that read MySQL before a revoke
-- must not keep the key after it); 'revoke' marks the hash revoked and drops the kept key, in one
-- step. Returns 1 if done, 0 if a 'keep' found the hash revoked.

if ARGV[1] == 'keep' then
  if redis.call('EXISTS', KEYS[2]) == 1 then
    return 0
  end
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
redis.call('SET', KEYS[2], '1')
redis.call('DEL', KEYS[1])
return 1
