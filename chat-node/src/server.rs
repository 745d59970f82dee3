//! Start-up: state, background tasks, the HTTP server ([`crate::startup`]) and the
//! graceful drain.

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_session::storage::RedisSessionStore;
use actix_web::cookie::Key;
use tokio_util::sync::CancellationToken;

use crate::bus::{run_subscriber, Hub, Publisher};
use crate::config::Config;
use crate::metrics::{Metrics, MetricsError};
use crate::presence::Presence;
use crate::redis_store::{Redis, RedisError};
use crate::startup::{http_server, metrics_server, HTTP_GRACE};
use crate::state::{AppState, Limits, Services};
use crate::storage::writer::Writer;
use crate::storage::{ensure_database, run_migrations, Db, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("session store: {0}")]
    Session(String),
    #[error("session key: it must be at least 32 bytes")]
    SessionKey,
    #[error("no session key: set CHAT_SESSION_KEY (the same on every node), or CHAT_DEV=true for a development key")]
    NoSessionKey,
    #[error("listen: {0}")]
    Io(#[from] std::io::Error),
}

/// Creates the database if needed and runs pending migrations.
pub async fn migrate(config: &Config) -> Result<usize, StartError> {
    ensure_database(&config.database_url).await?;
    Ok(run_migrations(&config.database_url).await?)
}

pub async fn serve(config: Config) -> Result<(), StartError> {
    let (key_material, is_dev_key) = config.session_key();
    if is_dev_key && !config.dev {
        return Err(StartError::NoSessionKey);
    }
    if key_material.len() < 32 {
        return Err(StartError::SessionKey);
    }
    if is_dev_key {
        tracing::warn!(
            "development mode: using the development session key; set CHAT_SESSION_KEY, shared by every node"
        );
    }
    let key = Key::derive_from(key_material.as_bytes());
    let ran = if config.migrate_on_start {
        migrate(&config).await?
    } else {
        crate::storage::check_migrated(&config.database_url).await?
    };
    tracing::info!(migrations = ran, "database ready");

    let node_id = config.node_id();
    let metrics = Metrics::new()?;
    let db = Db::new(
        &config.database_url,
        config.db_pool_size,
        metrics.db_pool_wait.clone(),
    )?;
    let redis = Redis::new(
        &config.redis_url,
        &config.redis_prefix,
        config.redis_pool_size,
        metrics.redis_pool_wait.clone(),
    )?;
    let presence = Presence::new(redis.clone(), node_id.clone());
    // A previous process with this node id may have died holding users.
    presence.leave().await?;
    presence.heartbeat(&[]).await?;

    let (hub, flush_rx) = Hub::new(redis.keys.clone(), metrics.clone(), config.presence_batch());
    let limits = Limits {
        bcrypt_cost: config.bcrypt_cost,
        login_max_failures: config.login_max_failures,
        login_max_failures_per_address: config.login_max_failures_per_address,
        register_max_per_address: config.register_max_per_address,
        bcrypt_threads: config.bcrypt_threads(),
        bcrypt_queue: config.bcrypt_queue,
        ws_rate: config.ws_rate,
        ws_burst: config.ws_burst,
        allowed_origins: config.allowed_origins(),
        rooms: config.room_limits(),
        room_creations_per_minute: config.room_creations_per_minute,
    };
    let publisher = Publisher::new(redis.clone(), metrics.clone());
    let writer = Writer::start(
        &config.database_url,
        config.writer(),
        publisher.deliver(),
        metrics.writer(),
    )?;
    let services = Services {
        db,
        redis: redis.clone(),
        presence,
        hub: hub.clone(),
        publisher,
        writer,
    };
    let state = AppState::new(services, metrics.clone(), limits);
    check_readiness(&state).await;
    let background = CancellationToken::new();
    tokio::spawn(run_readiness(state.clone(), background.clone()));
    tokio::spawn(run_subscriber(
        hub,
        redis.clone(),
        flush_rx,
        background.clone(),
    ));
    tokio::spawn(crate::ws::run_heartbeat(
        state.hub.clone(),
        Duration::from_secs(config.ws_send_timeout_secs),
        background.clone(),
    ));
    tokio::spawn(run_presence(
        state.clone(),
        config.presence_heartbeat(),
        config.presence_dead_after(),
        background.clone(),
    ));

    let keys = redis.keys.clone();
    let store = RedisSessionStore::builder_pooled(redis.pool().clone())
        .cache_keygen(move |k| keys.session(k))
        .build()
        .await
        .map_err(|e| StartError::Session(e.to_string()))?;
    let server = http_server(state.clone(), store, key, &config)?;
    let internal = metrics_server(state.clone(), config.metrics_listen)?;
    tracing::info!(listen = %config.listen, metrics = %config.metrics_listen, node = %node_id, "serving");

    let handle = server.handle();
    let internal_handle = internal.handle();
    tokio::spawn(internal);
    let drain_bound = Duration::from_secs(config.drain_timeout_secs)
        .saturating_sub(HTTP_GRACE)
        .max(Duration::from_secs(1));
    tokio::spawn(async move {
        wait_for_signal().await;
        drain(&state, drain_bound).await;
        background.cancel();
        tokio::join!(handle.stop(true), internal_handle.stop(true));
    });
    server.await?;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            tracing::error!("cannot listen for signals; waiting for ctrl-c");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Readiness goes 503 and new sockets are refused at once; open sockets finish the frame
/// they are handling (stored and published) and close with 1012 so clients move to
/// another node; then the node's users are marked offline unless held elsewhere.
pub async fn drain(state: &AppState, bound: Duration) {
    tracing::info!(sockets = state.sockets.len(), "draining");
    state.draining.store(true, Ordering::SeqCst);
    state.metrics.draining.set(1);
    state.shutdown.cancel();
    state.sockets.close();
    if tokio::time::timeout(bound, state.sockets.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            left = state.sockets.len(),
            "drain bound reached with sockets open"
        );
    }
    if let Err(e) = state.presence.leave().await {
        tracing::error!(error = %e, "could not clear this node's presence");
    }
    tracing::info!("drained");
}

/// How often `/readyz`'s answer is refreshed.
const READINESS_EVERY: Duration = Duration::from_secs(1);
/// A dependency slower than this counts as down.
const READINESS_TIMEOUT: Duration = Duration::from_millis(800);

/// Pings MySQL and Redis once and records the answer for `/readyz`.
async fn check_readiness(state: &AppState) {
    let (db, redis) = tokio::join!(
        tokio::time::timeout(READINESS_TIMEOUT, state.db.ping()),
        tokio::time::timeout(READINESS_TIMEOUT, state.redis.ping()),
    );
    state
        .readiness
        .set(matches!(db, Ok(Ok(()))), matches!(redis, Ok(Ok(()))));
}

/// Keeps `/readyz`'s answer fresh, so probes cost MySQL and Redis nothing.
async fn run_readiness(state: AppState, stop: CancellationToken) {
    let mut tick = tokio::time::interval(READINESS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        check_readiness(&state).await;
    }
}

/// Heartbeats this node's presence and reaps nodes that stopped doing so.
async fn run_presence(
    state: AppState,
    heartbeat: Duration,
    dead_after: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(heartbeat);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        if state.is_draining() {
            continue;
        }
        match state.presence.heartbeat(&state.hub.local_users()).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(
                    users = n,
                    "this node had been reaped; its users are back online"
                );
            }
            Err(e) => tracing::error!(error = %e, "presence heartbeat failed"),
        }
        match state.presence.reap_dead(dead_after).await {
            Ok(0) => {}
            Ok(n) => {
                for _ in 0..n {
                    state.metrics.presence_changed(false);
                }
            }
            Err(e) => tracing::error!(error = %e, "reaping dead nodes failed"),
        }
    }
}
