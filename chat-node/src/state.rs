//! What every handler and socket task shares, behind cheap clones.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chat_common::{validate, ErrorCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{Hub, Publisher};
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::redis_store::Redis;
use crate::storage::rooms::RoomLimits;
use crate::storage::users::User;
use crate::storage::writer::Writer;
use crate::storage::Db;

/// Settings the request path reads.
#[derive(Debug, Clone)]
pub struct Limits {
    pub bcrypt_cost: u32,
    pub login_max_failures: u32,
    pub login_max_failures_per_address: u32,
    pub register_max_per_address: u32,
    pub bcrypt_threads: usize,
    pub bcrypt_queue: usize,
    pub ws_rate: u32,
    pub ws_burst: u32,
    pub allowed_origins: Vec<String>,
    pub rooms: RoomLimits,
    pub room_creations_per_minute: u32,
}

/// Users are never renamed or deleted, so a found user may be cached for good; the cap
/// only bounds memory.
const USER_CACHE_CAP: usize = 100_000;

/// Where bcrypt runs: on at most `threads` blocking threads at once, with at most `queue`
/// logins and registrations waiting for one; past that they are refused rather than
/// piling up (each would hold a request, memory and a blocking thread).
#[derive(Debug, Clone)]
pub struct Bcrypt {
    admitted: Arc<Semaphore>,
    running: Arc<Semaphore>,
}

/// One login's or registration's place with [`Bcrypt`], held until it answers.
pub struct BcryptTicket {
    _admitted: OwnedSemaphorePermit,
    running: Arc<Semaphore>,
}

impl Bcrypt {
    pub fn new(threads: usize, queue: usize) -> Self {
        let threads = threads.max(1);
        Self {
            admitted: Arc::new(Semaphore::new(threads + queue)),
            running: Arc::new(Semaphore::new(threads)),
        }
    }

    /// A place, or `None` when every thread is busy and the queue is full.
    pub fn admit(&self) -> Option<BcryptTicket> {
        let admitted = self.admitted.clone().try_acquire_owned().ok()?;
        Some(BcryptTicket {
            _admitted: admitted,
            running: self.running.clone(),
        })
    }
}

impl BcryptTicket {
    /// Runs `work` on a blocking thread once a bcrypt thread is free. The thread is
    /// counted until `work` ends, even if the request is gone by then.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let lost = |e: &dyn std::fmt::Display| AppError::Internal(format!("bcrypt: {e}"));
        let thread = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| lost(&e))?;
        tokio::task::spawn_blocking(move || {
            let _thread = thread;
            work()
        })
        .await
        .map_err(|e| lost(&e))
    }
}

/// Whether MySQL and Redis answered the last background check.
#[derive(Debug, Default)]
pub struct Readiness {
    mysql: AtomicBool,
    redis: AtomicBool,
}

impl Readiness {
    pub fn set(&self, mysql: bool, redis: bool) {
        self.mysql.store(mysql, Ordering::Relaxed);
        self.redis.store(redis, Ordering::Relaxed);
    }

    /// `(mysql, redis)`.
    pub fn get(&self) -> (bool, bool) {
        (
            self.mysql.load(Ordering::Relaxed),
            self.redis.load(Ordering::Relaxed),
        )
    }
}

/// The handles on MySQL, Redis and the bus that a node wires together at start-up.
pub struct Services {
    pub db: Db,
    pub redis: Redis,
    pub presence: Presence,
    pub hub: Hub,
    pub publisher: Publisher,
    pub writer: Writer,
}

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub redis: Redis,
    pub presence: Presence,
    pub hub: Hub,
    pub publisher: Publisher,
    pub writer: Writer,
    pub metrics: Metrics,
    pub limits: Arc<Limits>,
    pub draining: Arc<AtomicBool>,
    pub readiness: Arc<Readiness>,
    pub bcrypt: Bcrypt,
    /// Cancelled when the node drains: every socket task closes with 1012.
    pub shutdown: CancellationToken,
    /// Socket tasks, so a drain waits for the writes they have in flight.
    pub sockets: TaskTracker,
    users: Arc<Mutex<HashMap<String, User>>>,
}

impl AppState {
    pub fn new(services: Services, metrics: Metrics, limits: Limits) -> Self {
        let Services {
            db,
            redis,
            presence,
            hub,
            publisher,
            writer,
        } = services;
        let bcrypt = Bcrypt::new(limits.bcrypt_threads, limits.bcrypt_queue);
        Self {
            db,
            publisher,
            writer,
            redis,
            presence,
            hub,
            metrics,
            limits: Arc::new(limits),
            draining: Arc::new(AtomicBool::new(false)),
            readiness: Arc::new(Readiness::default()),
            bcrypt,
            shutdown: CancellationToken::new(),
            sockets: TaskTracker::new(),
            users: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The user a client named, or `unknown_user`.
    pub async fn resolve_user(&self, name: &str) -> Result<User, AppError> {
        let unknown =
            || AppError::client(ErrorCode::UnknownUser, format!("no user named {name:?}"));
        if validate::username(name).is_err() {
            return Err(unknown());
        }
        let key = name.to_ascii_lowercase();
        let cached = self
            .users
            .lock()
            .ok()
            .and_then(|cache| cache.get(&key).cloned());
        if let Some(user) = cached {
            return Ok(user);
        }
        let user = self.db.user_by_name(name).await?.ok_or_else(unknown)?;
        if let Ok(mut cache) = self.users.lock() {
            if cache.len() >= USER_CACHE_CAP {
                cache.clear();
            }
            cache.insert(key, user.clone());
        }
        Ok(user)
    }
}
