//! Who is online, across the cluster.
//!
//! Each node keeps a set of its users (`presence:node:<node>`) and each user a set of the
//! nodes holding a connection (`presence:user:<name>`); `presence:online` holds everyone
//! online anywhere. Lua scripts change them atomically and publish a `presence` frame on
//! the user's presence channel only when the user's online state really changes. Nodes
//! heartbeat into `presence:nodes`; a node that stops (SIGKILL, power loss) is reaped by
//! any surviving node once its heartbeat is older than the dead-after bound, and its users
//! are published offline unless another node still holds them.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chat_common::protocol::ServerFrame;
use redis::Script;

use crate::redis_store::{Redis, RedisError};

/// Safety net on every presence set: renewed by heartbeats, gone if nobody renews them.
const KEY_TTL_SECS: u64 = 120;

const CONNECT: &str = r"
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
if redis.call('SADD', KEYS[3], ARGV[2]) == 1 then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
  return 1
end
return 0
";

const DISCONNECT: &str = r"
redis.call('SREM', KEYS[1], ARGV[2])
redis.call('SREM', KEYS[2], ARGV[1])
if redis.call('SCARD', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[2])
  if redis.call('SREM', KEYS[3], ARGV[2]) == 1 then
    redis.call('PUBLISH', ARGV[3], ARGV[4])
    return 1
  end
end
return 0
";

/// Removes a node and everything it held; only the caller whose ZREM wins does the work.
const REAP: &str = r"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
local users = redis.call('SMEMBERS', KEYS[2])
local changed = 0
for _, u in ipairs(users) do
  local k = ARGV[2] .. u
  redis.call('SREM', k, ARGV[1])
  if redis.call('SCARD', k) == 0 then
    redis.call('DEL', k)
    if redis.call('SREM', KEYS[3], u) == 1 then
      redis.call('PUBLISH', ARGV[3] .. u, cjson.encode({type = 'presence', username = u, online = false}))
      changed = changed + 1
    end
  end
end
redis.call('DEL', KEYS[2])
return changed
";

/// Clears users left in the online set whose node sets all expired (a whole cluster that
/// stopped at once leaves nobody to reap it).
const SWEEP: &str = r"
local changed = 0
for _, u in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. u) == 0 then
    redis.call('SREM', KEYS[1], u)
    redis.call('PUBLISH', ARGV[2] .. u, cjson.encode({type = 'presence', username = u, online = false}))
    changed = changed + 1
  end
end
return changed
";

pub fn presence_frame(username: &str, online: bool) -> String {
    serde_json::to_string(&ServerFrame::Presence {
        username: username.to_owned(),
        online,
    })
    .unwrap_or_default()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Clone)]
pub struct Presence {
    redis: Redis,
    node_id: String,
    transitions: Arc<tokio::sync::Mutex<()>>,
}

impl Presence {
    pub fn new(redis: Redis, node_id: String) -> Self {
        Self {
            redis,
            node_id,
            transitions: Arc::default(),
        }
    }

    /// Held around a socket's connect or disconnect so that a reload (one socket closing
    /// while the next opens on the same node) can never leave the user marked offline.
    pub async fn transition(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.transitions.lock().await
    }

    /// Records the user's first connection on this node; true when they came online.
    pub async fn connect(&self, username: &str) -> Result<bool, RedisError> {
        let keys = &self.redis.keys;
        let mut conn = self.redis.conn().await?;
        let changed: i64 = Script::new(CONNECT)
            .key(keys.user_nodes(username))
            .key(keys.node_users(&self.node_id))
            .key(keys.online())
            .arg(&self.node_id)
            .arg(username)
            .arg(KEY_TTL_SECS)
            .arg(keys.presence_channel(username))
            .arg(presence_frame(username, true))
            .invoke_async(&mut conn)
            .await?;
        Ok(changed == 1)
    }

    /// Records that the user's last connection on this node closed; true when they went
    /// offline.
    pub async fn disconnect(&self, username: &str) -> Result<bool, RedisError> {
        let keys = &self.redis.keys;
        let mut conn = self.redis.conn().await?;
        let changed: i64 = Script::new(DISCONNECT)
            .key(keys.node_users(&self.node_id))
            .key(keys.user_nodes(username))
            .key(keys.online())
            .arg(&self.node_id)
            .arg(username)
            .arg(keys.presence_channel(username))
            .arg(presence_frame(username, false))
            .invoke_async(&mut conn)
            .await?;
        Ok(changed == 1)
    }

    pub async fn online(&self, usernames: &[String]) -> Result<Vec<bool>, RedisError> {
        if usernames.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.redis.conn().await?;
        let flags: Vec<bool> = redis::cmd("SMISMEMBER")
            .arg(self.redis.keys.online())
            .arg(usernames)
            .query_async(&mut conn)
            .await?;
        Ok(flags)
    }

    /// Renews this node's keys. When the node finds itself reaped (it stalled past the
    /// dead-after bound), it registers its users again, so a pause never leaves them
    /// offline while connected. Returns how many users came back online that way.
    pub async fn heartbeat(&self, local_users: &[String]) -> Result<usize, RedisError> {
        let keys = &self.redis.keys;
        let mut conn = self.redis.conn().await?;
        let added: i64 = redis::cmd("ZADD")
            .arg(keys.nodes())
            .arg(now_ms())
            .arg(&self.node_id)
            .query_async(&mut conn)
            .await?;
        if added == 1 && !local_users.is_empty() {
            drop(conn);
            let mut back = 0;
            for user in local_users {
                if self.connect(user).await? {
                    back += 1;
                }
            }
            return Ok(back);
        }
        let mut pipe = redis::pipe();
        pipe.expire(keys.node_users(&self.node_id), KEY_TTL_SECS as i64)
            .ignore();
        for user in local_users {
            pipe.expire(keys.user_nodes(user), KEY_TTL_SECS as i64)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
        Ok(0)
    }

    /// Reaps nodes silent for longer than `dead_after`; returns users published offline.
    pub async fn reap_dead(&self, dead_after: Duration) -> Result<usize, RedisError> {
        let keys = &self.redis.keys;
        let mut conn = self.redis.conn().await?;
        let cutoff = now_ms().saturating_sub(dead_after.as_millis() as u64);
        let dead: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(keys.nodes())
            .arg("-inf")
            .arg(format!("({cutoff}"))
            .query_async(&mut conn)
            .await?;
        let mut changed = 0;
        for node in dead.iter().filter(|n| **n != self.node_id) {
            tracing::warn!(node = %node, "reaping a node that stopped heartbeating");
            changed += self.reap(&mut conn, node).await?;
        }
        let swept: i64 = Script::new(SWEEP)
            .key(keys.online())
            .arg(keys.user_nodes_prefix())
            .arg(keys.presence_channel_prefix())
            .invoke_async(&mut conn)
            .await?;
        Ok(changed + swept as usize)
    }

    async fn reap(
        &self,
        conn: &mut deadpool_redis::Connection,
        node: &str,
    ) -> Result<usize, RedisError> {
        let keys = &self.redis.keys;
        let changed: i64 = Script::new(REAP)
            .key(keys.nodes())
            .key(keys.node_users(node))
            .key(keys.online())
            .arg(node)
            .arg(keys.user_nodes_prefix())
            .arg(keys.presence_channel_prefix())
            .invoke_async(conn)
            .await?;
        Ok(changed as usize)
    }

    /// A clean exit: this node's users go offline unless another node holds them.
    pub async fn leave(&self) -> Result<usize, RedisError> {
        let mut conn = self.redis.conn().await?;
        self.reap(&mut conn, &self.node_id.clone()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_payload_is_the_protocol_frame() {
        let v: serde_json::Value = serde_json::from_str(&presence_frame("bob", true)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "presence", "username": "bob", "online": true})
        );
    }
}
