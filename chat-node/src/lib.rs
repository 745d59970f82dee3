//! # chat-node
//!
//! A stateless chat node: any number of them behind a load balancer share one MySQL and
//! one Redis and behave as one service.
//!
//! # Layout
//! - [`config`]: flags and environment variables.
//! - [`http`]: routes for accounts, the directory, health, metrics and the browser client.
//! - [`ws`]: the WebSocket upgrade and one task per socket.
//! - [`bus`]: local sockets and the Redis pub/sub fan-out between nodes.
//! - [`presence`]: who is online anywhere, with heartbeats and reaping of dead nodes.
//! - [`storage`]: MySQL (diesel-async): users, conversations, messages, migrations.
//! - [`redis_store`]: the Redis pool and every key name.
//! - [`metrics`]: Prometheus metrics.
//! - [`server`]: wiring it together, background tasks and the graceful drain.
//! - [`error`]: the error policy and the one mapping to HTTP.

pub mod bus;
pub mod config;
pub mod error;
pub mod http;
pub mod metrics;
pub mod presence;
pub mod redis_store;
pub mod server;
pub mod state;
pub mod storage;
pub mod ws;
