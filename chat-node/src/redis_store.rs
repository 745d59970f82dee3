//! The Redis pool and the names of every key, all under the node's prefix (channel names
//! live with the bus, in `bus::channel`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::Histogram;

use deadpool_redis::{
    Config as PoolConfig, Connection, Pool, PoolConfig as Sizing, Runtime, Timeouts,
};

const POOL_WAIT: Duration = Duration::from_secs(3);

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

    pub fn login_failures(&self, username: &str) -> String {
        format!(
            "{}:login-failures:{}",
            self.prefix,
            username.to_ascii_lowercase()
        )
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

    /// Failed logins for `username` in the current window.
    pub async fn login_failures(&self, username: &str) -> Result<u32, RedisError> {
        let mut conn = self.conn().await?;
        let failures: Option<u32> = redis::cmd("GET")
            .arg(self.keys.login_failures(username))
            .query_async(&mut conn)
            .await?;
        Ok(failures.unwrap_or(0))
    }

    /// Counts a failed login; the window starts again with each failure.
    pub async fn record_login_failure(
        &self,
        username: &str,
        window_secs: i64,
    ) -> Result<(), RedisError> {
        let key = self.keys.login_failures(username);
        let mut conn = self.conn().await?;
        redis::pipe()
            .incr(&key, 1)
            .ignore()
            .expire(&key, window_secs)
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    pub async fn clear_login_failures(&self, username: &str) -> Result<(), RedisError> {
        let mut conn = self.conn().await?;
        redis::cmd("DEL")
            .arg(self.keys.login_failures(username))
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }
}
