//! Error codes as clients see them: `{"error": {"code", "message"}}` over HTTP and the
//! `error` frame over WebSocket. The node maps each code to an HTTP status in one place.

use serde::{Deserialize, Serialize};

/// The serde and strum spellings must agree; a test checks every variant.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ErrorCode {
    InvalidBody,
    InvalidUsername,
    InvalidPassword,
    InvalidQuery,
    UsernameTaken,
    InvalidCredentials,
    TooManyAttempts,
    /// The user already has the most WebSockets a node allows one user.
    TooManyConnections,
    Unauthenticated,
    OriginNotAllowed,
    NotFound,
    MethodNotAllowed,
    BadRequest,
    EmptyMessage,
    MessageTooLong,
    UnknownUser,
    /// The room does not exist or the user is not a member: the two are not told apart.
    NotAMember,
    /// Only a room's owner removes others.
    Forbidden,
    /// The room would pass its most members.
    RoomFull,
    InvalidRoomName,
    /// A user would belong to more rooms than a node allows (docs/protocol.md).
    TooManyRooms,
    RateLimited,
    /// A request body with a `Content-Encoding` other than `identity`: never inflated.
    UnsupportedEncoding,
    /// A dependency (MySQL, Redis) failed; the request may be retried.
    Unavailable,
    /// A bug on the node; retrying is unlikely to help.
    Internal,
}

impl ErrorCode {
    /// The wire spelling, also used as a metric label.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A code with the sentence a person reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The HTTP error body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;

    #[test]
    fn every_code_serialises_as_its_wire_spelling() {
        for code in ErrorCode::iter() {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).unwrap();
            assert_eq!(back, code);
        }
    }
}
