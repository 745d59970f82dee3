//! HTTP routes. Handlers stay thin: they check input, call storage or Redis, and map the
//! result; error bodies come from [`crate::error`].

mod assets;
mod auth;
mod health;
mod users;

use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::{web, HttpRequest};
use chat_common::ErrorCode;

use crate::error::AppError;
use crate::routes::resource;

/// Bodies are two short strings; anything larger is not a real client.
const JSON_LIMIT: usize = 16 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(JSON_LIMIT)
            .error_handler(json_error),
    )
    .app_data(web::QueryConfig::default().error_handler(query_error))
    .service(resource("/api/register").route(web::post().to(auth::register)))
    .service(resource("/api/login").route(web::post().to(auth::login)))
    .service(resource("/api/logout").route(web::post().to(auth::logout)))
    .service(resource("/api/me").route(web::get().to(auth::me)))
    .service(resource("/api/users").route(web::get().to(users::list)))
    .service(resource("/healthz").route(web::get().to(health::healthz)))
    .service(resource("/readyz").route(web::get().to(health::readyz)))
    .configure(assets::configure);
}

/// The internal listener's routes: only what operators scrape.
pub fn configure_internal(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/metrics").route(web::get().to(health::metrics)));
}

fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let message = match &err {
        JsonPayloadError::ContentType => {
            "the body must be JSON (Content-Type: application/json)".to_owned()
        }
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            "the body is too large".to_owned()
        }
        other => format!("the body is not the expected JSON: {other}"),
    };
    AppError::client(ErrorCode::InvalidBody, message).into()
}

fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    AppError::client(ErrorCode::InvalidQuery, format!("bad query string: {err}")).into()
}
