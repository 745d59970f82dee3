//! Accounts, login and logout; what a session holds is [`crate::session`]'s business.

use std::net::IpAddr;
use std::sync::OnceLock;

use actix_session::Session;
use actix_web::{web, HttpRequest, HttpResponse};
use chat_common::protocol::{Credentials, UserInfo};
use chat_common::{validate, ErrorCode};

use crate::error::AppError;
use crate::routes::TrustedProxies;
use crate::session::{self, SessionUser};
use crate::state::{AppState, BcryptTicket};
use crate::storage::users::{CreateUserError, User};

/// The window in which failed logins are counted, from the first one.
const FAILURE_WINDOW_SECS: u64 = 300;
/// The window in which registrations from one address are counted.
const REGISTRATION_WINDOW_SECS: u64 = 3600;
/// A hash at the configured cost, checked when the user does not exist so that an unknown
/// user and a wrong password take equally long.
static DUMMY_HASH: OnceLock<String> = OnceLock::new();

fn internal(e: impl std::fmt::Display) -> AppError {
    AppError::Internal(e.to_string())
}

/// What the per-address limits count: the client's address, or for IPv6 its /64, which
/// one client usually holds whole.
fn address_key(proxies: &TrustedProxies, req: &HttpRequest) -> String {
    match proxies.client(req) {
        Some(IpAddr::V6(ip)) => {
            let s = ip.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(ip) => ip.to_string(),
        None => "unknown".to_owned(),
    }
}

fn info(user: &User) -> Result<UserInfo, AppError> {
    let id = u64::try_from(user.id).map_err(internal)?;
    Ok(UserInfo {
        id,
        username: user.username.clone(),
    })
}

async fn hash(ticket: &BcryptTicket, password: String, cost: u32) -> Result<String, AppError> {
    ticket
        .run(move || bcrypt::hash(password, cost))
        .await?
        .map_err(internal)
}

async fn dummy_hash(ticket: &BcryptTicket, cost: u32) -> Result<String, AppError> {
    if let Some(h) = DUMMY_HASH.get() {
        return Ok(h.clone());
    }
    let h = hash(ticket, "no such user".to_owned(), cost).await?;
    Ok(DUMMY_HASH.get_or_init(|| h).clone())
}

async fn verify(ticket: &BcryptTicket, password: String, hash: String) -> Result<bool, AppError> {
    ticket
        .run(move || bcrypt::verify(password, &hash).unwrap_or(false))
        .await
}

/// A place with the bcrypt threads, or 503 with `Retry-After` when they are all busy and
/// the queue is full.
fn admit(state: &AppState) -> Result<BcryptTicket, AppError> {
    state.bcrypt.admit().ok_or_else(|| {
        AppError::retry_later(
            ErrorCode::Unavailable,
            "too many logins and registrations at once; retry in a moment",
            1,
        )
    })
}

#[tracing::instrument(skip_all, fields(username = %body.username))]
pub async fn register(
    state: web::Data<AppState>,
    proxies: web::Data<TrustedProxies>,
    req: HttpRequest,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, AppError> {
    let Credentials { username, password } = body.into_inner();
    validate::username(&username)?;
    validate::password(&password)?;
    let ticket = admit(&state)?;
    let address = address_key(&proxies, &req);
    let limit = [(
        state.redis.keys.address_registrations(&address),
        state.limits.register_max_per_address,
    )];
    if let Some(after) = state
        .redis
        .count_attempt(&limit, REGISTRATION_WINDOW_SECS)
        .await?
    {
        return Err(AppError::retry_later(
            ErrorCode::TooManyAttempts,
            "too many registrations from this address; try again later",
            after,
        ));
    }
    let hashed = hash(&ticket, password, state.limits.bcrypt_cost).await?;
    let user = match state.db.create_user(&username, &hashed).await {
        Ok(user) => user,
        Err(CreateUserError::Taken) => {
            return Err(AppError::client(
                ErrorCode::UsernameTaken,
                "that username is taken",
            ))
        }
        Err(CreateUserError::Store(e)) => return Err(e.into()),
    };
    tracing::info!(user_id = user.id, "registered");
    if let Err(e) = state.publisher.new_user(&user.username).await {
        // The account exists; others see it on their next connect.
        tracing::warn!(error = %e, "could not announce the new user");
    }
    Ok(HttpResponse::Created().json(info(&user)?))
}

#[tracing::instrument(skip_all, fields(username = %body.username))]
pub async fn login(
    state: web::Data<AppState>,
    proxies: web::Data<TrustedProxies>,
    req: HttpRequest,
    session: Session,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, AppError> {
    let Credentials { username, password } = body.into_inner();
    let invalid = || AppError::client(ErrorCode::InvalidCredentials, "wrong username or password");
    if validate::username(&username).is_err() || validate::password(&password).is_err() {
        return Err(invalid());
    }
    let ticket = admit(&state)?;
    // Counted before the check, atomically: parallel guesses cannot all pass the limits.
    // The Redis connection is held per call, never across the bcrypt check below.
    let address = address_key(&proxies, &req);
    let keys = &state.redis.keys;
    let limits = [
        (
            keys.login_attempts(&username),
            state.limits.login_max_failures,
        ),
        (
            keys.address_login_attempts(&address),
            state.limits.login_max_failures_per_address,
        ),
    ];
    if let Some(after) = state
        .redis
        .count_attempt(&limits, FAILURE_WINDOW_SECS)
        .await?
    {
        return Err(AppError::retry_later(
            ErrorCode::TooManyAttempts,
            "too many failed logins; wait a few minutes",
            after,
        ));
    }
    let found = state.db.user_with_hash(&username).await?;
    let (user, hashed) = match found {
        Some(u) => (
            Some(User {
                id: u.id,
                username: u.username,
            }),
            u.password_hash,
        ),
        None => (None, dummy_hash(&ticket, state.limits.bcrypt_cost).await?),
    };
    let ok = verify(&ticket, password, hashed).await?;
    let user = match (ok, user) {
        (true, Some(user)) => user,
        _ => return Err(invalid()),
    };
    state.redis.forgive_login(&username, &address).await?;
    session::log_in(&session, &user)?;
    tracing::info!(user_id = user.id, "logged in");
    Ok(HttpResponse::Ok().json(info(&user)?))
}

/// The session is purged first, so it dies even when closing that login's sockets
/// fails; the logout still answers 204 then.
pub async fn logout(
    state: web::Data<AppState>,
    session: Session,
    current: Option<SessionUser>,
) -> HttpResponse {
    session::log_out(&session);
    if let Some(current) = current {
        tracing::info!(user_id = current.user.id, "logged out");
        if let Err(e) = state.publisher.logout(current.user.id, current.tag).await {
            tracing::warn!(error = %e, "could not close the sockets of the login");
        }
    }
    HttpResponse::NoContent().finish()
}

pub async fn me(current: SessionUser) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().json(info(&current.user)?))
}
