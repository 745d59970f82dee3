//! `GET /api/users`: the directory, a page at a time.

use actix_web::{web, HttpResponse};
use chat_common::protocol::{UserStatus, UsersPage, DIRECTORY_LIMIT};
use chat_common::ErrorCode;
use serde::Deserialize;

use crate::error::AppError;
use crate::session::SessionUser;
use crate::state::AppState;

const DEFAULT_PAGE: usize = 100;

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    after: Option<String>,
    limit: Option<usize>,
}

pub async fn list(
    state: web::Data<AppState>,
    _logged_in: SessionUser,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=DIRECTORY_LIMIT).contains(&limit) {
        return Err(AppError::client(
            ErrorCode::InvalidQuery,
            format!("limit is 1 to {DIRECTORY_LIMIT}"),
        ));
    }
    let fetch = (limit + 1) as i64;
    let mut names = state
        .db
        .usernames_page(query.after.as_deref().filter(|a| !a.is_empty()), fetch)
        .await?;
    let more = names.len() > limit;
    names.truncate(limit);
    let online = state.presence.online(&names).await?;
    let next = if more { names.last().cloned() } else { None };
    let users = names
        .into_iter()
        .zip(online)
        .map(|(username, online)| UserStatus {
            username,
            online,
            unread: None,
        })
        .collect();
    Ok(HttpResponse::Ok().json(UsersPage { users, next }))
}
