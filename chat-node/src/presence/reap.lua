-- Removes a node and everything it held; only the caller whose ZREM wins does the work.
-- KEYS: node heartbeat zset, the node's user set, online set, username → id hash.
-- ARGV: node id, prefix of user node sets, prefix of presence channels (+ user id).
-- Returns how many users went offline.
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local users = redis.call('SMEMBERS', KEYS[2])
local changed = 0
for _, u in ipairs(users) do
  local k = ARGV[2] .. u
  redis.call('SREM', k, ARGV[1])
  if redis.call('SCARD', k) == 0 then
    redis.call('DEL', k)
    if redis.call('SREM', KEYS[3], u) == 1 then
      local id = redis.call('HGET', KEYS[4], u)
      if id then
        redis.call('PUBLISH', ARGV[3] .. id, cjson.encode({type = 'presence', username = u, online = false}))
      end
      changed = changed + 1
    end
  end
end
redis.call('DEL', KEYS[2])
return changed
