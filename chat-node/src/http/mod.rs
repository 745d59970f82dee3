//! HTTP routes. Handlers stay thin: they check input, call storage or Redis, and map the
//! result; error bodies come from [`crate::error`].

mod assets;
mod auth;
mod health;
mod users;

pub use auth::{current_user, SessionUser};

use std::time::Instant;

use actix_web::dev::Service;
use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::{web, HttpRequest, HttpResponse};
use chat_common::error::ApiError;
use chat_common::ErrorCode;
use futures_util::FutureExt;

use crate::error::{error_response, AppError};
use crate::metrics::Metrics;

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
    .service(resource("/metrics").route(web::get().to(health::metrics)))
    .service(resource("/ws").route(web::get().to(crate::ws::upgrade)))
    .configure(assets::configure)
    .default_service(web::to(not_found));
}

/// A route whose other methods get a JSON 405 rather than actix's empty one.
pub(crate) fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let message = format!("{} is not supported on {}", req.method(), req.path());
    error_response(ApiError::new(ErrorCode::MethodNotAllowed, message))
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

async fn not_found(req: HttpRequest) -> HttpResponse {
    let message = format!("no route for {} {}", req.method(), req.path());
    error_response(ApiError::new(ErrorCode::NotFound, message))
}

/// Counts and times every request by route pattern (never by raw path, which would let
/// clients mint label values).
pub fn record<S, B>(
    req: actix_web::dev::ServiceRequest,
    srv: &S,
) -> impl std::future::Future<Output = Result<actix_web::dev::ServiceResponse<B>, actix_web::Error>>
where
    S: Service<
        actix_web::dev::ServiceRequest,
        Response = actix_web::dev::ServiceResponse<B>,
        Error = actix_web::Error,
    >,
{
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let start = Instant::now();
    srv.call(req).map(move |res| {
        if let (Ok(res), Some(m)) = (&res, metrics) {
            m.http_requests
                .with_label_values(&[route.as_str(), res.status().as_str()])
                .inc();
            m.http_duration
                .with_label_values(&[route.as_str()])
                .observe(start.elapsed().as_secs_f64());
        }
        res
    })
}
