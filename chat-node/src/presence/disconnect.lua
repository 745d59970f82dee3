-- A user's last connection on a node closed.
-- KEYS: node's user set, user's node set, online set.
-- ARGV: node id, username, user's presence channel (`p:<user id>`).
-- Publishes the user offline only when no node holds them any more; returns 1 then.
redis.call('SREM', KEYS[1], ARGV[2])
redis.call('SREM', KEYS[2], ARGV[1])
if redis.call('SCARD', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[2])
  if redis.call('SREM', KEYS[3], ARGV[2]) == 1 then
    redis.call('PUBLISH', ARGV[3], cjson.encode({type = 'presence', username = ARGV[2], online = false}))
    return 1
  end
end
return 0
