//! # Error policy
//!
//! Each layer has its own `thiserror` enum: [`crate::storage::StoreError`] for MySQL,
//! [`crate::redis_store::RedisError`] for Redis. Whatever reaches a client becomes an
//! [`AppError`], mapped here, once, to an HTTP status and the `{"error": {code, message}}`
//! body (the WebSocket side sends the same code in an `error` frame). Failures of MySQL or
//! Redis are logged with their cause and shown to clients only as `unavailable` (503, worth
//! a retry); bugs are logged too and shown only as `internal` (500, not worth one).
//! `anyhow` lives in `main.rs` alone.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use chat_common::error::{ApiError, ErrorBody};
use chat_common::ErrorCode;

use crate::bus::publish::PublishError;
use crate::redis_store::RedisError;
use crate::storage::rooms::RoomError;
use crate::storage::writer::WriteError;
use crate::storage::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Client(#[from] ApiError),
    /// Refused for now; the answer says when to retry (`Retry-After`).
    #[error("{error} (retry after {after_secs} s)")]
    RetryLater { error: ApiError, after_secs: u64 },
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    #[error("session store: {0}")]
    Session(String),
    /// The node's pub/sub subscription could not be confirmed in time.
    #[error("the subscriber connection is not ready")]
    SubscriberNotReady,
    /// A bug or an impossible state (a failed serialisation, a lost blocking task).
    #[error("internal: {0}")]
    Internal(String),
}

impl From<serde_json::Error> for AppError {
    fn from(e: serde_json::Error) -> Self {
        Self::Internal(format!("encoding: {e}"))
    }
}

impl From<RoomError> for AppError {
    fn from(e: RoomError) -> Self {
        let message = e.to_string();
        match e {
            RoomError::NotAMember | RoomError::NotMember(_) => {
                Self::client(ErrorCode::NotAMember, message)
            }
            RoomError::Forbidden => Self::client(ErrorCode::Forbidden, message),
            RoomError::RoomFull(_) => Self::client(ErrorCode::RoomFull, message),
            RoomError::TooManyRooms(_) => Self::client(ErrorCode::TooManyRooms, message),
            RoomError::NotPublished => Self::Redis(RedisError::Pool(message)),
            RoomError::Busy => Self::Store(StoreError::Write(message)),
            RoomError::Store(e) => Self::Store(e),
        }
    }
}

impl From<WriteError> for AppError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::ClientIdReused => Self::client(
                ErrorCode::BadRequest,
                "this clientId was already used in another conversation",
            ),
            WriteError::NotAMember => {
                Self::client(ErrorCode::NotAMember, "no such room among yours")
            }
            WriteError::Store(e) => Self::Store(e),
            WriteError::Stopped => Self::Store(StoreError::Write("the writer has stopped".into())),
            WriteError::NotPublished => Self::Redis(RedisError::Pool(
                "a stored message could not be published".into(),
            )),
        }
    }
}

impl From<PublishError> for AppError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::Encode(e) => e.into(),
            PublishError::Redis(e) => Self::Redis(e),
        }
    }
}

impl AppError {
    pub fn client(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Client(ApiError::new(code, message))
    }

    pub fn retry_later(code: ErrorCode, message: impl Into<String>, after_secs: u64) -> Self {
        Self::RetryLater {
            error: ApiError::new(code, message),
            after_secs,
        }
    }

    fn code(&self) -> ErrorCode {
        match self {
            Self::Client(e) | Self::RetryLater { error: e, .. } => e.code,
            Self::Store(_) | Self::Redis(_) | Self::Session(_) | Self::SubscriberNotReady => {
                ErrorCode::Unavailable
            }
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// What the client is told; failures that are not the client's are logged here so no
    /// caller forgets, and their causes stay in the log.
    pub fn to_api(&self) -> ApiError {
        match self {
            Self::Client(e) | Self::RetryLater { error: e, .. } => e.clone(),
            Self::Internal(_) => {
                tracing::error!(error = %self, "internal error");
                ApiError::new(ErrorCode::Internal, "something went wrong on the server")
            }
            _ => {
                tracing::error!(error = %self, "dependency failure");
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
        | EmptyMessage | MessageTooLong | InvalidRoomName => StatusCode::BAD_REQUEST,
        Forbidden | NotAMember => StatusCode::FORBIDDEN,
        RoomFull | TooManyRooms => StatusCode::CONFLICT,
        UsernameTaken => StatusCode::CONFLICT,
        InvalidCredentials | Unauthenticated => StatusCode::UNAUTHORIZED,
        OriginNotAllowed => StatusCode::FORBIDDEN,
        NotFound | UnknownUser => StatusCode::NOT_FOUND,
        MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        TooManyAttempts | RateLimited | TooManyConnections => StatusCode::TOO_MANY_REQUESTS,
        UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub fn error_response(error: ApiError) -> HttpResponse {
    HttpResponse::build(status_for(error.code)).json(ErrorBody { error })
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        status_for(self.code())
    }

    fn error_response(&self) -> HttpResponse {
        let api = self.to_api();
        tracing::info!(code = %api.code, "request refused");
        let mut res = error_response(api);
        if let Self::RetryLater { after_secs, .. } = self {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*after_secs));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;

    #[test]
    fn every_code_maps_to_an_error_status_and_only_the_node_s_own_failures_to_5xx() {
        for code in ErrorCode::iter() {
            let status = status_for(code);
            let ours = matches!(code, ErrorCode::Unavailable | ErrorCode::Internal);
            assert_eq!(status.is_server_error(), ours, "{code}: {status}");
            assert!(status.is_client_error() || ours, "{code}: {status}");
        }
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
    }

    #[test]
    fn a_refusal_for_now_says_when_to_retry() {
        let busy = AppError::retry_later(ErrorCode::TooManyAttempts, "slow down", 42);
        let res = busy.error_response();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            res.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from(42u64))
        );
        assert_eq!(busy.to_api().message, "slow down");
    }

    #[test]
    fn outages_are_503_unavailable_and_bugs_500_internal() {
        let outages = [
            AppError::Session("down".into()),
            AppError::Redis(RedisError::Pool("down".into())),
            AppError::SubscriberNotReady,
        ];
        for outage in outages {
            assert_eq!(outage.status_code(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(outage.to_api().code, ErrorCode::Unavailable);
        }
        let bug = AppError::Internal("lost a task".into());
        assert_eq!(bug.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        let api = bug.to_api();
        assert_eq!(api.code, ErrorCode::Internal);
        assert!(!api.message.contains("lost a task"));
    }
}
