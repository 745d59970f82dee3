//! Who is online, across the cluster.
//!
//! Each node keeps a set of its users (`presence:node:<node>`) and each user a set of the
//! nodes holding a connection (`presence:user:<name>`); `presence:online` holds everyone
//! online anywhere, and `presence:ids` each user's id. Lua scripts change them atomically
//! and publish a `presence` frame on the user's presence channel (`p:<user id>`) only when
//! the user's online state really changes. Nodes
//! heartbeat into `presence:nodes`; a node that stops (SIGKILL, power loss) is reaped by
//! any surviving node once its heartbeat is older than the dead-after bound, and its users
//! are published offline unless another node still holds them.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use redis::Script;

use crate::bus::channel::Channels;
use crate::redis_store::{Multiplexed, Redis, RedisError};

/// Locks serialising connects and disconnects, each for the users whose id falls in it.
const TRANSITION_STRIPES: usize = 64;

/// Safety net on every presence set: renewed by heartbeats, gone if nobody renews them.
const KEY_TTL_SECS: u64 = 120;

/// The scripts publish `presence` frames themselves, atomically with the change; the
/// frame has the shape of [`crate::bus::publish::presence_payload`].
struct Scripts {
    connect: Script,
    disconnect: Script,
    reap: Script,
    sweep: Script,
}

/// Hashed once; `Script` sends EVALSHA and falls back to EVAL when Redis lost it.
static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    connect: Script::new(include_str!("connect.lua")),
    disconnect: Script::new(include_str!("disconnect.lua")),
    reap: Script::new(include_str!("reap.lua")),
    sweep: Script::new(include_str!("sweep.lua")),
});

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Clone)]
pub struct Presence {
    redis: Redis,
    channels: Channels,
    node_id: String,
    transitions: Arc<[tokio::sync::Mutex<()>]>,
    /// One multiplexed connection for what every socket calls (connect, disconnect,
    /// online) and for the node's heartbeat and reaping: a connect storm pipelines its
    /// calls on it instead of queueing for the pool, which logins and sessions need too,
    /// and a heartbeat that waited for the pool through a storm got its live node reaped
    /// (every user of it offline, then online again, to every socket that follows them).
    /// It reconnects by itself.
    shared: Multiplexed,
}

impl Presence {
    pub fn new(redis: Redis, node_id: String) -> Self {
        Self {
            channels: Channels::new(redis.keys.prefix()),
            redis,
            node_id,
            transitions: (0..TRANSITION_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            shared: Multiplexed::default(),
        }
    }

    async fn shared(&self) -> Result<ConnectionManager, RedisError> {
        self.shared.get(&self.redis).await
    }

    /// Held around a socket's connect or disconnect so that a reload (one socket closing
    /// while the next opens on the same node) can never leave the user marked offline.
    /// One lock per stripe of users, so a connect storm is not one queue.
    pub async fn transition(&self, user_id: i64) -> tokio::sync::MutexGuard<'_, ()> {
        let stripe = user_id.rem_euclid(self.transitions.len() as i64) as usize;
        self.transitions[stripe].lock().await
    }

    /// Records the user's first connection on this node; true when they came online.
    pub async fn connect(&self, user_id: i64, username: &str) -> Result<bool, RedisError> {
        let keys = &self.redis.keys;
        let mut conn = self.shared().await?;
        let changed: i64 = SCRIPTS
            .connect
            .key(keys.user_nodes(username))
            .key(keys.node_users(&self.node_id))
            .key(keys.online())
            .key(keys.user_ids())
            .arg(&self.node_id)
            .arg(username)
            .arg(KEY_TTL_SECS)
            .arg(self.channels.presence(user_id))
            .arg(user_id)
            .invoke_async(&mut conn)
            .await?;
        Ok(changed == 1)
    }

    /// Records that the user's last connection on this node closed; true when they went
    /// offline.
    pub async fn disconnect(&self, user_id: i64, username: &str) -> Result<bool, RedisError> {
        let keys = &self.redis.keys;
        let mut conn = self.shared().await?;
        let changed: i64 = SCRIPTS
            .disconnect
            .key(keys.node_users(&self.node_id))
            .key(keys.user_nodes(username))
            .key(keys.online())
            .arg(&self.node_id)
            .arg(username)
            .arg(self.channels.presence(user_id))
            .invoke_async(&mut conn)
            .await?;
        Ok(changed == 1)
    }

    pub async fn online<S: AsRef<str>>(&self, usernames: &[S]) -> Result<Vec<bool>, RedisError> {
        if usernames.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<&str> = usernames.iter().map(AsRef::as_ref).collect();
        let mut conn = self.shared().await?;
        let flags: Vec<bool> = redis::cmd("SMISMEMBER")
            .arg(self.redis.keys.online())
            .arg(names)
            .query_async(&mut conn)
            .await?;
        Ok(flags)
    }

    /// Renews this node's keys. When the node finds itself reaped (it stalled past the
    /// dead-after bound), it registers its users again, so a pause never leaves them
    /// offline while connected. Returns how many users came back online that way.
    pub async fn heartbeat(&self, local_users: &[(i64, Arc<str>)]) -> Result<usize, RedisError> {
        let keys = &self.redis.keys;
        let mut conn = self.shared().await?;
        let added: i64 = redis::cmd("ZADD")
            .arg(keys.nodes())
            .arg(now_ms())
            .arg(&self.node_id)
            .query_async(&mut conn)
            .await?;
        if added == 1 && !local_users.is_empty() {
            let mut back = 0;
            for (id, name) in local_users {
                if self.connect(*id, name).await? {
                    back += 1;
                }
            }
            return Ok(back);
        }
        let mut pipe = redis::pipe();
        pipe.expire(keys.node_users(&self.node_id), KEY_TTL_SECS as i64)
            .ignore();
        for (_, name) in local_users {
            pipe.expire(keys.user_nodes(name), KEY_TTL_SECS as i64)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
        Ok(0)
    }

    /// Reaps nodes silent for longer than `dead_after`; returns users published offline.
    pub async fn reap_dead(&self, dead_after: Duration) -> Result<usize, RedisError> {
        let keys = &self.redis.keys;
        let mut conn = self.shared().await?;
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
        let swept: i64 = SCRIPTS
            .sweep
            .key(keys.online())
            .key(keys.user_ids())
            .arg(keys.user_nodes_prefix())
            .arg(self.channels.presence_prefix())
            .invoke_async(&mut conn)
            .await?;
        Ok(changed + swept as usize)
    }

    async fn reap(&self, conn: &mut ConnectionManager, node: &str) -> Result<usize, RedisError> {
        let keys = &self.redis.keys;
        let changed: i64 = SCRIPTS
            .reap
            .key(keys.nodes())
            .key(keys.node_users(node))
            .key(keys.online())
            .key(keys.user_ids())
            .arg(node)
            .arg(keys.user_nodes_prefix())
            .arg(self.channels.presence_prefix())
            .invoke_async(conn)
            .await?;
        Ok(changed as usize)
    }

    /// A clean exit: this node's users go offline unless another node holds them.
    pub async fn leave(&self) -> Result<usize, RedisError> {
        let mut conn = self.shared().await?;
        self.reap(&mut conn, &self.node_id.clone()).await
    }
}
