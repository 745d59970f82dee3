//! Integration tests: real chat-node processes on free ports, sharing a fresh MariaDB
//! database and a fresh Redis prefix per test, so every test is a small cluster. One test
//! binary keeps link time down.

// Test support panics on purpose: a failed set-up step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;
mod mariadb;
mod redis_server;

mod bad_frames;
mod bcrypt_pool;
mod chat;
mod drain;
mod encoding;
mod faults;
mod headers;
mod http_api;
mod internal;
mod lb;
mod login_limits;
mod metrics;
mod migrate_on_start;
mod migrations;
mod mysql_outage;
mod presence;
mod reconnect_storm;
mod rooms;
mod secrets;
mod writer;
mod ws_limits;
