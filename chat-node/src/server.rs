//! Start-up, background tasks and the graceful drain.

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_session::config::{PersistentSession, TtlExtensionPolicy};
use actix_session::storage::RedisSessionStore;
use actix_session::SessionMiddleware;
use actix_web::cookie::{time, Key, SameSite};
use actix_web::{web, App, HttpServer};
use tokio_util::sync::CancellationToken;

use crate::bus::{run_subscriber, Hub};
use crate::config::Config;
use crate::metrics::{Metrics, MetricsError};
use crate::presence::Presence;
use crate::redis_store::{Redis, RedisError};
use crate::state::{AppState, Limits};
use crate::storage::{ensure_database, run_migrations, Db, StoreError};

pub const SESSION_COOKIE: &str = "chat_session";
const SESSION_TTL_DAYS: i64 = 7;
/// What the drain bound keeps back for finishing HTTP requests once sockets are closed.
const HTTP_GRACE: Duration = Duration::from_secs(2);

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
    if key_material.len() < 32 {
        return Err(StartError::SessionKey);
    }
    if is_dev_key {
        tracing::warn!(
            "using the development session key: set CHAT_SESSION_KEY, shared by every node"
        );
    }
    let key = Key::derive_from(key_material.as_bytes());
    let ran = migrate(&config).await?;
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

    let (hub, flush_rx) = Hub::new(redis.keys.clone(), metrics.clone());
    let limits = Limits {
        bcrypt_cost: config.bcrypt_cost,
        login_max_failures: config.login_max_failures,
        ws_rate: config.ws_rate,
        ws_burst: config.ws_burst,
        allowed_origins: config.allowed_origins(),
    };
    let state = AppState::new(
        db,
        redis.clone(),
        presence,
        hub.clone(),
        metrics.clone(),
        limits,
    );
    let background = CancellationToken::new();
    tokio::spawn(run_subscriber(
        hub,
        redis.clone(),
        flush_rx,
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
    let secure = config.secure_cookies;
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        let session = SessionMiddleware::builder(store.clone(), key.clone())
            .cookie_name(SESSION_COOKIE.to_owned())
            .cookie_http_only(true)
            .cookie_same_site(SameSite::Lax)
            .cookie_secure(secure)
            .session_lifecycle(
                PersistentSession::default()
                    .session_ttl(time::Duration::days(SESSION_TTL_DAYS))
                    .session_ttl_extension_policy(TtlExtensionPolicy::OnStateChanges),
            )
            .build();
        App::new()
            .app_data(web::Data::new(app_state.clone()))
            .app_data(web::Data::new(app_state.metrics.clone()))
            .wrap(session)
            .wrap_fn(crate::http::record)
            .configure(crate::http::configure)
    })
    .disable_signals()
    .shutdown_timeout(HTTP_GRACE.as_secs())
    .workers(
        config
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from)),
    )
    .bind(config.listen)?
    .run();
    tracing::info!(listen = %config.listen, node = %node_id, "serving");

    let handle = server.handle();
    let drain_bound = Duration::from_secs(config.drain_timeout_secs)
        .saturating_sub(HTTP_GRACE)
        .max(Duration::from_secs(1));
    tokio::spawn(async move {
        wait_for_signal().await;
        drain(&state, drain_bound).await;
        background.cancel();
        handle.stop(true).await;
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
