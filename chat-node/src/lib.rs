//! # chat-node
//!
//! A stateless chat node: any number of them behind a load balancer share one MySQL and
//! one Redis and behave as one service.
//!
//! # Layout
//! - [`config`]: flags and environment variables.
//! - [`startup`]: the HTTP server, its middleware and the one route table.
//! - [`http`]: routes for accounts, the directory, health, metrics and the browser client.
//! - [`ws`]: the `/ws` route, the WebSocket upgrade and one task per socket.
//! - [`routes`]: what every route shares: JSON 404 and 405, the request span and metrics.
//! - [`session`]: the login a session cookie carries, as an extractor, and the cookie.
//! - [`state`]: what every handler and socket task shares.
//! - [`bus`]: local sockets and the Redis pub/sub fan-out between nodes.
//! - [`presence`]: who is online anywhere, with heartbeats and reaping of dead nodes.
//! - [`storage`]: MySQL (diesel-async): users, conversations, messages, migrations.
//! - [`redis_store`]: the Redis pool and every key name.
//! - [`metrics`]: Prometheus metrics.
//! - [`server`]: wiring it together, background tasks and the graceful drain.
//!
//! `http` and `ws` never import each other; what both need lives in `session`, `routes`
//! and `state`.
//! - [`error`]: the error policy and the one mapping to HTTP.

pub mod bus;
pub mod config;
pub mod error;
pub mod http;
pub mod metrics;
pub mod presence;
pub mod redis_store;
pub mod routes;
pub mod server;
pub mod session;
pub mod startup;
pub mod state;
pub mod storage;
pub mod ws;
