//! Accounts and sessions. Sessions live in Redis (actix-session), so any node accepts a
//! session another node created.

use std::sync::OnceLock;

use actix_session::Session;
use actix_web::{web, HttpResponse};
use chat_common::protocol::{Credentials, UserInfo};
use chat_common::{validate, ErrorCode};
use rand::distr::{Alphanumeric, SampleString};

use crate::bus::UserEvent;
use crate::error::AppError;
use crate::state::AppState;
use crate::storage::users::{CreateUserError, User};

const USER_ID: &str = "user_id";
const USERNAME: &str = "username";
/// A random tag per login, so logging out closes exactly that login's sockets.
const TAG: &str = "tag";
/// The window in which failed logins are counted.
const FAILURE_WINDOW_SECS: i64 = 300;
/// A hash at the configured cost, checked when the user does not exist so that an unknown
/// user and a wrong password take equally long.
static DUMMY_HASH: OnceLock<String> = OnceLock::new();

/// The logged-in user of a session.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub user: User,
    pub tag: String,
}

fn session_err(e: impl std::fmt::Display) -> AppError {
    AppError::Session(e.to_string())
}

fn internal(e: impl std::fmt::Display) -> AppError {
    AppError::Internal(e.to_string())
}

pub fn current_user(session: &Session) -> Result<SessionUser, AppError> {
    let id: Option<i64> = session.get(USER_ID).map_err(session_err)?;
    let username: Option<String> = session.get(USERNAME).map_err(session_err)?;
    let tag: Option<String> = session.get(TAG).map_err(session_err)?;
    match (id, username) {
        (Some(id), Some(username)) => Ok(SessionUser {
            user: User { id, username },
            tag: tag.unwrap_or_default(),
        }),
        _ => Err(AppError::client(ErrorCode::Unauthenticated, "log in first")),
    }
}

fn info(user: &User) -> Result<UserInfo, AppError> {
    let id = u64::try_from(user.id).map_err(internal)?;
    Ok(UserInfo {
        id,
        username: user.username.clone(),
    })
}

async fn hash(password: String, cost: u32) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
        .await
        .map_err(internal)?
        .map_err(internal)
}

async fn dummy_hash(cost: u32) -> Result<String, AppError> {
    if let Some(h) = DUMMY_HASH.get() {
        return Ok(h.clone());
    }
    let h = hash("no such user".to_owned(), cost).await?;
    Ok(DUMMY_HASH.get_or_init(|| h).clone())
}

async fn verify(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
        .await
        .unwrap_or(false)
}

#[tracing::instrument(skip_all, fields(username = %body.username))]
pub async fn register(
    state: web::Data<AppState>,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, AppError> {
    let Credentials { username, password } = body.into_inner();
    validate::username(&username)?;
    validate::password(&password)?;
    let hashed = hash(password, state.limits.bcrypt_cost).await?;
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
    let announce = crate::presence::presence_frame(&user.username, false);
    if let Err(e) = state
        .redis
        .publish(&state.redis.keys.directory_channel(), &announce)
        .await
    {
        // The account exists; others see it on their next connect.
        tracing::warn!(error = %e, "could not announce the new user");
    }
    Ok(HttpResponse::Created().json(info(&user)?))
}

#[tracing::instrument(skip_all, fields(username = %body.username))]
pub async fn login(
    state: web::Data<AppState>,
    session: Session,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, AppError> {
    let Credentials { username, password } = body.into_inner();
    let invalid = || AppError::client(ErrorCode::InvalidCredentials, "wrong username or password");
    if validate::username(&username).is_err() || validate::password(&password).is_err() {
        return Err(invalid());
    }
    // The Redis connection is held per call, never across the bcrypt check below.
    if state.redis.login_failures(&username).await? >= state.limits.login_max_failures {
        return Err(AppError::client(
            ErrorCode::TooManyAttempts,
            "too many failed logins for this user; wait a few minutes",
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
        None => (None, dummy_hash(state.limits.bcrypt_cost).await?),
    };
    let ok = verify(password, hashed).await;
    let user = match (ok, user) {
        (true, Some(user)) => user,
        _ => {
            state
                .redis
                .record_login_failure(&username, FAILURE_WINDOW_SECS)
                .await?;
            return Err(invalid());
        }
    };
    state.redis.clear_login_failures(&username).await?;
    session.renew();
    let tag = Alphanumeric.sample_string(&mut rand::rng(), 24);
    session.insert(USER_ID, user.id).map_err(session_err)?;
    session
        .insert(USERNAME, &user.username)
        .map_err(session_err)?;
    session.insert(TAG, &tag).map_err(session_err)?;
    tracing::info!(user_id = user.id, "logged in");
    Ok(HttpResponse::Ok().json(info(&user)?))
}

pub async fn logout(
    state: web::Data<AppState>,
    session: Session,
) -> Result<HttpResponse, AppError> {
    if let Ok(current) = current_user(&session) {
        let event: UserEvent<()> = UserEvent::logout(current.tag);
        let payload = serde_json::to_string(&event).map_err(internal)?;
        state
            .redis
            .publish(&state.redis.keys.user_channel(current.user.id), &payload)
            .await?;
        tracing::info!(user_id = current.user.id, "logged out");
    }
    session.purge();
    Ok(HttpResponse::NoContent().finish())
}

pub async fn me(session: Session) -> Result<HttpResponse, AppError> {
    let current = current_user(&session)?;
    Ok(HttpResponse::Ok().json(info(&current.user)?))
}
