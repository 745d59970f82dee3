//! # Error policy
//!
//! Each layer has its own `thiserror` enum: [`crate::storage::StoreError`] for MySQL,
//! [`crate::redis_store::RedisError`] for Redis. Whatever reaches a client becomes an
//! [`AppError`], mapped here, once, to an HTTP status and the `{"error": {code, message}}`
//! body (the WebSocket side sends the same code in an `error` frame). Failures of MySQL or
//! Redis are logged with their cause and shown to clients only as `unavailable`, never as a
//! 500 with internals. `anyhow` lives in `main.rs` alone.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use chat_common::error::{ApiError, ErrorBody};
use chat_common::ErrorCode;

use crate::redis_store::RedisError;
use crate::storage::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Client(#[from] ApiError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    #[error("session store: {0}")]
    Session(String),
    /// A bug or an impossible state (a failed serialisation, a lost blocking task).
    #[error("internal: {0}")]
    Internal(String),
}

impl AppError {
    pub fn client(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Client(ApiError::new(code, message))
    }

    /// What the client is told; dependency failures are logged here so no caller forgets.
    pub fn to_api(&self) -> ApiError {
        match self {
            Self::Client(e) => e.clone(),
            other => {
                tracing::error!(error = %other, "dependency failure");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "the service is briefly unavailable, try again",
                )
            }
        }
    }
}

pub fn status_for(code: ErrorCode) -> StatusCode {
    use ErrorCode::*;
    match code {
        InvalidBody | InvalidUsername | InvalidPassword | InvalidQuery | BadRequest
        | EmptyMessage | MessageTooLong => StatusCode::BAD_REQUEST,
        UsernameTaken => StatusCode::CONFLICT,
        InvalidCredentials | Unauthenticated => StatusCode::UNAUTHORIZED,
        OriginNotAllowed => StatusCode::FORBIDDEN,
        NotFound | UnknownUser => StatusCode::NOT_FOUND,
        MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        TooManyAttempts | RateLimited => StatusCode::TOO_MANY_REQUESTS,
        Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

pub fn error_response(error: ApiError) -> HttpResponse {
    HttpResponse::build(status_for(error.code)).json(ErrorBody { error })
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Client(e) => status_for(e.code),
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let api = self.to_api();
        tracing::info!(code = %api.code, "request refused");
        error_response(api)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_error_maps_to_a_4xx_and_dependencies_to_503() {
        assert_eq!(status_for(ErrorCode::UsernameTaken), StatusCode::CONFLICT);
        assert_eq!(
            status_for(ErrorCode::TooManyAttempts),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            status_for(ErrorCode::OriginNotAllowed),
            StatusCode::FORBIDDEN
        );
        assert_eq!(status_for(ErrorCode::InvalidBody), StatusCode::BAD_REQUEST);
        let dependency = AppError::Session("down".into());
        assert_eq!(dependency.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(dependency.to_api().code, ErrorCode::Unavailable);
    }
}
