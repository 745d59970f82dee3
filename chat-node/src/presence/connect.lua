-- A user's first connection on a node.
-- KEYS: user's node set, node's user set, online set, username → id hash.
-- ARGV: node id, username, key TTL (s), user's presence channel, user id.
-- Publishes the user online only when they were offline everywhere; returns 1 then.
redis.call('HSET', KEYS[4], ARGV[2], ARGV[5])
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
if redis.call('SADD', KEYS[3], ARGV[2]) == 1 then
  redis.call('PUBLISH', ARGV[4], cjson.encode({type = 'presence', username = ARGV[2], online = true}))
  return 1
end
return 0
