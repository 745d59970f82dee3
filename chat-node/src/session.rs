//! The login a session cookie carries. Sessions live in Redis (actix-session), so any node
//! accepts a session another node created. HTTP handlers and the WebSocket upgrade both
//! read it, so it sits below `http` and `ws`.

use std::future::{ready, Future, Ready};

use actix_session::config::{PersistentSession, TtlExtensionPolicy};
use actix_session::storage::RedisSessionStore;
use actix_session::{Session, SessionExt, SessionMiddleware};
use actix_web::cookie::{time, Key, SameSite};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse};
use actix_web::{FromRequest, HttpRequest};
use chat_common::ErrorCode;
use futures_util::FutureExt;
use rand::distr::{Alphanumeric, SampleString};

use crate::error::AppError;
use crate::storage::users::User;

pub const SESSION_COOKIE: &str = "chat_session";
const SESSION_TTL_DAYS: i64 = 7;

const USER_ID: &str = "user_id";
const USERNAME: &str = "username";
/// A random tag per login, so logging out closes exactly that login's sockets.
const TAG: &str = "tag";

/// The logged-in user of a request; as an extractor it answers 401 `unauthenticated`
/// when the session holds no login.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub user: User,
    pub tag: String,
}

fn session_err(e: impl std::fmt::Display) -> AppError {
    AppError::Session(e.to_string())
}

impl SessionUser {
    fn from_session(session: &Session) -> Result<Self, AppError> {
        let id: Option<i64> = session.get(USER_ID).map_err(session_err)?;
        let username: Option<String> = session.get(USERNAME).map_err(session_err)?;
        let tag: Option<String> = session.get(TAG).map_err(session_err)?;
        match (id, username) {
            (Some(id), Some(username)) => Ok(Self {
                user: User { id, username },
                tag: tag.unwrap_or_default(),
            }),
            _ => Err(AppError::client(ErrorCode::Unauthenticated, "log in first")),
        }
    }
}

impl FromRequest for SessionUser {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Self::from_session(&req.get_session()))
    }
}

/// Writes a fresh login into the session under a new session id, so an id planted before
/// login is worthless after it.
pub fn log_in(session: &Session, user: &User) -> Result<(), AppError> {
    session.renew();
    let tag = Alphanumeric.sample_string(&mut rand::rng(), 24);
    session.insert(USER_ID, user.id).map_err(session_err)?;
    session
        .insert(USERNAME, &user.username)
        .map_err(session_err)?;
    session.insert(TAG, &tag).map_err(session_err)?;
    Ok(())
}

/// Purged rather than cleared, so the session id dies with the login.
pub fn log_out(session: &Session) {
    session.purge();
}

/// HttpOnly and SameSite=Lax keep the cookie from scripts and cross-site posts; Secure
/// keeps it off plain HTTP (browsers still send it to localhost), except with `--dev`.
pub fn middleware(
    store: RedisSessionStore,
    key: Key,
    secure: bool,
) -> SessionMiddleware<RedisSessionStore> {
    SessionMiddleware::builder(store, key)
        .cookie_name(SESSION_COOKIE.to_owned())
        .cookie_http_only(true)
        .cookie_same_site(SameSite::Lax)
        .cookie_secure(secure)
        .session_lifecycle(
            PersistentSession::default()
                .session_ttl(time::Duration::days(SESSION_TTL_DAYS))
                .session_ttl_extension_policy(TtlExtensionPolicy::OnStateChanges),
        )
        .build()
}

/// Wraps [`middleware`]: whatever fails in it is reading or writing the session in Redis,
/// an outage, so the client gets 503 `unavailable` (actix-session answers a bare 500).
pub fn store_errors<S, B>(
    req: ServiceRequest,
    srv: &S,
) -> impl Future<Output = Result<ServiceResponse<B>, actix_web::Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    srv.call(req)
        .map(|res| res.map_err(|e| AppError::Session(e.to_string()).into()))
}
