//! Error codes as clients see them: `{"error": {"code", "message"}}` over HTTP and the
//! `error` frame over WebSocket. The node maps each code to an HTTP status in one place.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidBody,
    InvalidUsername,
    InvalidPassword,
    InvalidQuery,
    UsernameTaken,
    InvalidCredentials,
    TooManyAttempts,
    Unauthenticated,
    OriginNotAllowed,
    NotFound,
    MethodNotAllowed,
    BadRequest,
    EmptyMessage,
    MessageTooLong,
    UnknownUser,
    RateLimited,
    /// A dependency (MySQL, Redis) failed; the request may be retried.
    Unavailable,
}

impl ErrorCode {
    /// The wire spelling, also used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidBody => "invalid_body",
            Self::InvalidUsername => "invalid_username",
            Self::InvalidPassword => "invalid_password",
            Self::InvalidQuery => "invalid_query",
            Self::UsernameTaken => "username_taken",
            Self::InvalidCredentials => "invalid_credentials",
            Self::TooManyAttempts => "too_many_attempts",
            Self::Unauthenticated => "unauthenticated",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::BadRequest => "bad_request",
            Self::EmptyMessage => "empty_message",
            Self::MessageTooLong => "message_too_long",
            Self::UnknownUser => "unknown_user",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
        }
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
    use super::*;

    #[test]
    fn codes_serialise_as_their_wire_spelling() {
        for code in [
            ErrorCode::InvalidBody,
            ErrorCode::UsernameTaken,
            ErrorCode::TooManyAttempts,
            ErrorCode::MessageTooLong,
            ErrorCode::Unavailable,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
