//! The Redis pool and the names of every key, all under the node's prefix (channel names
//! live with the bus, in `bus::channel`).

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use prometheus::Histogram;
use redis::Script;

use deadpool_redis::{
    Config as PoolConfig, Connection, Pool, PoolConfig as Sizing, Runtime, Timeouts,
};

const POOL_WAIT: Duration = Duration::from_secs(3);

/// Counts one attempt on every key unless one of them is at its limit, atomically, so
/// parallel attempts never pass a limit together. KEYS: the counters; ARGV[1]: the
/// window in seconds, from a key's first attempt; ARGV[1 + i]: the limit of KEYS[i].
/// Returns 0 when counted, else the seconds left in the window of a full key.
static COUNT_ATTEMPT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
for i, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i + 1]) then
    local ttl = redis.call('TTL', key)
    if ttl < 1 then
      redis.call('EXPIRE', key, ARGV[1])
      ttl = tonumber(ARGV[1])
    end
    return ttl
  end
end
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 then
    redis.call('EXPIRE', key, ARGV[1])
  end
end
return 0
",
    )
});

/// A login that succeeded: its username's failures are forgiven, and its address no
/// longer counts it. KEYS[1]: the username's counter, KEYS[2]: the address's.
static FORGIVE_LOGIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('DEL', KEYS[1])
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then
  redis.call('DECR', KEYS[2])
end
return 0
",
    )
});

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("no redis connection: {0}")]
    Pool(String),
    #[error("redis command failed: {0}")]
    Command(#[from] redis::RedisError),
}

impl From<deadpool_redis::PoolError> for RedisError {
    fn from(e: deadpool_redis::PoolError) -> Self {
        Self::Pool(e.to_string())
    }
}

/// Key names. Presence keys use the username as stored, which is what clients see.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: Arc<str>,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn session(&self, session_key: &str) -> String {
        format!("{}:session:{session_key}", self.prefix)
    }

    /// Sorted set: node id → time of its last heartbeat (ms).
    pub fn nodes(&self) -> String {
        format!("{}:presence:nodes", self.prefix)
    }

    /// Set: users with a connection on that node.
    pub fn node_users(&self, node_id: &str) -> String {
        format!("{}:presence:node:{node_id}", self.prefix)
    }

    pub fn user_nodes_prefix(&self) -> String {
        format!("{}:presence:user:", self.prefix)
    }

    /// Set: nodes holding a connection of that user.
    pub fn user_nodes(&self, username: &str) -> String {
        format!("{}{username}", self.user_nodes_prefix())
    }

    /// Set: every user online anywhere.
    pub fn online(&self) -> String {
        format!("{}:presence:online", self.prefix)
    }

    /// Hash: username → user id, so the presence scripts name a user's presence channel
    /// (`p:<id>`) when they find only the name (reaping a node, sweeping).
    pub fn user_ids(&self) -> String {
        format!("{}:presence:ids", self.prefix)
    }

    /// Login attempts for a username, any casing: failed ones and those in progress.
    pub fn login_attempts(&self, username: &str) -> String {
        format!(
            "{}:login-attempts:user:{}",
            self.prefix,
            username.to_ascii_lowercase()
        )
    }

    /// Login attempts from a client address: failed ones and those in progress.
    pub fn address_login_attempts(&self, address: &str) -> String {
        format!("{}:login-attempts:addr:{address}", self.prefix)
    }

    /// Registrations from a client address.
    pub fn address_registrations(&self, address: &str) -> String {
        format!("{}:registrations:addr:{address}", self.prefix)
    }

    /// Rooms a user created in the current minute.
    pub fn room_creations(&self, user_id: i64) -> String {
        format!("{}:room-creations:user:{user_id}", self.prefix)
    }
}

/// A multiplexed connection opened on first use and shared by clones: no pool checkout
/// (and its `UNWATCH`/`PING`) per command, and it reconnects by itself. Its commands and
/// connection attempts fail after [`POOL_WAIT`], as the pool's do: with Redis gone, a
/// command would otherwise wait for it to come back.
#[derive(Clone, Default)]
pub struct Multiplexed(Arc<tokio::sync::OnceCell<redis::aio::ConnectionManager>>);

impl Multiplexed {
    pub async fn get(&self, redis: &Redis) -> Result<redis::aio::ConnectionManager, RedisError> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(POOL_WAIT)
            .set_connection_timeout(POOL_WAIT);
        let conn = self
            .0
            .get_or_try_init(|| {
                redis::aio::ConnectionManager::new_with_config(redis.client().clone(), config)
            })
            .await?;
        Ok(conn.clone())
    }
}

#[derive(Clone)]
pub struct Redis {
    pool: Pool,
    client: redis::Client,
    wait: Histogram,
    pub keys: Keys,
}

impl Redis {
    /// `wait` observes how long callers wait for a connection.
    pub fn new(url: &str, prefix: &str, size: usize, wait: Histogram) -> Result<Self, RedisError> {
        let mut cfg = PoolConfig::from_url(url);
        cfg.pool = Some(Sizing {
            max_size: size.max(1),
            timeouts: Timeouts {
                wait: Some(POOL_WAIT),
                create: Some(POOL_WAIT),
                recycle: Some(POOL_WAIT),
            },
            ..Sizing::default()
        });
        let pool = cfg
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| RedisError::Pool(e.to_string()))?;
        let client = redis::Client::open(url)?;
        Ok(Self {
            pool,
            client,
            wait,
            keys: Keys::new(prefix),
        })
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    pub async fn conn(&self) -> Result<Connection, RedisError> {
        let started = Instant::now();
        let conn = self.pool.get().await;
        self.wait.observe(started.elapsed().as_secs_f64());
        Ok(conn?)
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut conn = self.conn().await?;
        redis::cmd("PING").query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Counts an attempt against each `(key, limit)` unless one is at its limit already;
    /// then answers `Some(seconds until that key's window ends)` and counts nothing.
    pub async fn count_attempt(
        &self,
        limits: &[(String, u32)],
        window_secs: u64,
    ) -> Result<Option<u64>, RedisError> {
        let mut call = COUNT_ATTEMPT.prepare_invoke();
        call.arg(window_secs);
        for (key, limit) in limits {
            call.key(key).arg(*limit);
        }
        let mut conn = self.conn().await?;
        let retry_after: u64 = call.invoke_async(&mut conn).await?;
        Ok((retry_after > 0).then_some(retry_after))
    }

    /// A successful login: clears the username's count and takes the attempt off the
    /// address's.
    pub async fn forgive_login(&self, username: &str, address: &str) -> Result<(), RedisError> {
        let mut conn = self.conn().await?;
        FORGIVE_LOGIN
            .key(self.keys.login_attempts(username))
            .key(self.keys.address_login_attempts(address))
            .invoke_async::<()>(&mut conn)
            .await?;
        Ok(())
    }
}
