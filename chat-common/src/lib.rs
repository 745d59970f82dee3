//! # chat-common
//!
//! What every client of the chat cluster agrees on, with no server machinery attached
//! (no actix, no diesel), so load tests and future clients can depend on it cheaply.
//!
//! - [`protocol`]: the WebSocket frames and HTTP bodies of `PROTOCOL.md`, as serde types.
//! - [`error`]: the one list of error codes clients see, over HTTP and WebSocket alike.
//! - [`validate`]: the rules for usernames, passwords, message texts and client ids.
//! - [`ids`]: message ids, kept below 2^53 so browsers read them exactly.

pub mod error;
pub mod ids;
pub mod protocol;
pub mod validate;

pub use error::ErrorCode;
pub use ids::MessageId;
