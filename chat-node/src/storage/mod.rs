//! MySQL through diesel-async on a deadpool pool: accounts, conversations and messages.
//! Queries live beside the rows they return; callers get plain structs, never diesel types.

pub mod messages;
mod migrate;
mod prepared;
pub mod reads;
pub mod rooms;
mod schema;
pub mod users;
pub mod writer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::Histogram;

use diesel::QueryResult;
use diesel_async::pooled_connection::deadpool::{Object, Pool, PoolError};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::AsyncMysqlConnection;

pub use migrate::{check_migrated, ensure_database, run_migrations};

/// Longest wait for a pooled connection before the request is answered `unavailable`.
const POOL_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("no database connection: {0}")]
    Pool(String),
    #[error("database url: {0}")]
    Url(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("value out of range: {0}")]
    Range(String),
    #[error("mysql: {0}")]
    Mysql(#[from] mysql_async::Error),
    /// A write batch failed; each of its messages carries this.
    #[error("write failed: {0}")]
    Write(String),
}

impl From<PoolError> for StoreError {
    fn from(e: PoolError) -> Self {
        Self::Pool(e.to_string())
    }
}

/// Errors that say something about the statement, not about the connection it ran on.
fn is_statement_error(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind as Kind, Error};
    match e {
        Error::NotFound
        | Error::DeserializationError(_)
        | Error::SerializationError(_)
        | Error::QueryBuilderError(_)
        | Error::RollbackTransaction => true,
        Error::DatabaseError(kind, _) => matches!(
            kind,
            Kind::UniqueViolation
                | Kind::ForeignKeyViolation
                | Kind::NotNullViolation
                | Kind::CheckViolation
        ),
        _ => false,
    }
}

/// A cloneable handle on the pool.
#[derive(Clone)]
pub struct Db {
    pool: Pool<AsyncMysqlConnection>,
    wait: Histogram,
    /// The writer's sequence lock, which membership changes take too.
    seq_lock: Arc<str>,
}

impl Db {
    /// `wait` observes how long callers wait for a connection.
    pub fn new(database_url: &str, size: usize, wait: Histogram) -> Result<Self, StoreError> {
        // No `SELECT 1` per checkout: a dead connection fails its first query, which
        // reaches the client as `unavailable`, and deadpool drops it on return.
        let mut config = ManagerConfig::default();
        config.recycling_method = RecyclingMethod::Fast;
        let manager = AsyncDieselConnectionManager::<AsyncMysqlConnection>::new_with_config(
            database_url,
            config,
        );
        let pool = Pool::builder(manager)
            .max_size(size.max(1))
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        let (_, database) = migrate::split_database_url(database_url)?;
        let seq_lock = writer::LockName::new(&database).name().into();
        Ok(Self {
            pool,
            wait,
            seq_lock,
        })
    }

    async fn conn(&self) -> Result<Object<AsyncMysqlConnection>, StoreError> {
        let started = Instant::now();
        let conn = self.pool.get().await;
        self.wait.observe(started.elapsed().as_secs_f64());
        Ok(conn?)
    }

    /// Runs queries on a pooled connection. A connection whose query failed for any
    /// reason but the statement itself (a dead socket after a MySQL restart, a timeout)
    /// leaves the pool instead of going back to fail every later checkout; checkouts
    /// never spend a `SELECT 1` on finding out.
    pub async fn run<T>(
        &self,
        queries: impl AsyncFnOnce(&mut AsyncMysqlConnection) -> QueryResult<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn().await?;
        let result = queries(&mut conn).await;
        if let Err(e) = &result {
            if !is_statement_error(e) {
                tracing::warn!(error = %e, "dropping a MySQL connection after an error");
                drop(Object::take(conn));
            }
        }
        Ok(result?)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        use diesel_async::SimpleAsyncConnection;
        self.run(async |conn| conn.batch_execute("SELECT 1").await)
            .await
    }

    pub fn status(&self) -> deadpool::Status {
        self.pool.status()
    }
}
