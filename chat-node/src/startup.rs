//! The HTTP server and its one route table: `http` and `ws` each register their own
//! routes here, so neither needs to know the other.

use std::net::SocketAddr;
use std::time::Duration;

use actix_session::storage::RedisSessionStore;
use actix_web::cookie::Key;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};

use crate::config::Config;
use crate::routes::TrustedProxies;
use crate::state::AppState;
use crate::{http, routes, session, ws};

/// What the drain bound keeps back for finishing HTTP requests once sockets are closed.
pub const HTTP_GRACE: Duration = Duration::from_secs(2);

/// Binds the listen address; the caller drives the returned server and stops it, since
/// signals are the drain's to handle.
pub fn http_server(
    state: AppState,
    sessions: RedisSessionStore,
    key: Key,
    config: &Config,
) -> std::io::Result<Server> {
    let secure = !config.dev;
    let proxies = TrustedProxies::new(&config.trusted_proxies);
    let workers = config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
    let socket_limits = ws::SocketLimits::new(config);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .app_data(web::Data::new(state.metrics.clone()))
            .app_data(web::Data::new(socket_limits.clone()))
            .app_data(web::Data::new(proxies.clone()))
            .wrap(session::middleware(sessions.clone(), key.clone(), secure))
            .wrap_fn(session::store_errors)
            .wrap(from_fn(ws::admit))
            .wrap_fn(routes::refuse_encoded_bodies)
            .wrap_fn(routes::security_headers)
            .wrap_fn(routes::observe)
            .configure(http::configure)
            .configure(ws::configure)
            .default_service(web::to(routes::not_found))
    })
    .disable_signals()
    .shutdown_timeout(HTTP_GRACE.as_secs())
    // Flush once this much is buffered: with the socket body's pieces of the same size,
    // a connection's write buffer never grows past actix-http's initial 8 KiB.
    .h1_write_buffer_size(ws::WRITE_CHUNK)
    // A reply written in several pieces would otherwise wait for the client's delayed ACK
    // (Nagle): 40 ms on every `sync` or history page over 4 KiB.
    .tcp_nodelay(true)
    .workers(workers)
    .bind(config.listen)?
    .run();
    Ok(server)
}

/// The internal listener: `/metrics` only, on one worker, kept off the public port.
pub fn metrics_server(state: AppState, listen: SocketAddr) -> std::io::Result<Server> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .configure(http::configure_internal)
            .default_service(web::to(routes::not_found))
    })
    .disable_signals()
    .shutdown_timeout(1)
    .workers(1)
    .bind(listen)?
    .run();
    Ok(server)
}
