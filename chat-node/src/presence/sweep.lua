-- Clears users left in the online set whose node sets all expired (a whole cluster that
-- stopped at once leaves nobody to reap it).
-- KEYS: online set, username → id hash.
-- ARGV: prefix of user node sets, prefix of presence channels (+ user id).
local changed = 0
for _, u in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. u) == 0 then
    redis.call('SREM', KEYS[1], u)
    local id = redis.call('HGET', KEYS[2], u)
    if id then
      redis.call('PUBLISH', ARGV[2] .. id, cjson.encode({type = 'presence', username = u, online = false}))
    end
    changed = changed + 1
  end
end
return changed
