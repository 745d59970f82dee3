//! What every route shares, whichever module registers it: JSON answers for unknown paths
//! and methods, and the span and metrics around each request. It sits below `http` and
//! `ws` so that neither needs the other.

use std::future::Future;
use std::time::Instant;

use actix_web::body::EitherBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chat_common::error::ApiError;
use chat_common::ErrorCode;
use futures_util::FutureExt;
use tracing::Instrument;

use crate::error::error_response;
use crate::metrics::Metrics;

/// A route whose other methods get a JSON 405 rather than actix's empty one.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let message = format!("{} is not supported on {}", req.method(), req.path());
    error_response(ApiError::new(ErrorCode::MethodNotAllowed, message))
}

pub async fn not_found(req: HttpRequest) -> HttpResponse {
    let message = format!("no route for {} {}", req.method(), req.path());
    error_response(ApiError::new(ErrorCode::NotFound, message))
}

/// Runs each request in a span, so every line it logs names the request, and counts and
/// times it. Both use the route pattern, never the raw path, which would let clients mint
/// label values.
pub fn observe<S, B>(
    req: ServiceRequest,
    srv: &S,
) -> impl Future<Output = Result<ServiceResponse<B>, actix_web::Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        route = %route,
        request_id = %format_args!("{:016x}", rand::random::<u64>()),
    );
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let start = Instant::now();
    let call = span.in_scope(|| srv.call(req));
    call.map(move |res| {
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
    .instrument(span)
}

/// Refuses a request whose body is encoded (`Content-Encoding` other than `identity`)
/// before anything reads the body: a few KB of zstd can inflate to gigabytes.
pub fn refuse_encoded_bodies<S, B>(
    req: ServiceRequest,
    srv: &S,
) -> impl Future<Output = Result<ServiceResponse<EitherBody<B>>, actix_web::Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    let encoded = req
        .headers()
        .get_all(header::CONTENT_ENCODING)
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .any(|coding| !coding.trim().eq_ignore_ascii_case("identity"));
    let call = if encoded { Err(req) } else { Ok(srv.call(req)) };
    async move {
        match call {
            Ok(call) => call.await.map(ServiceResponse::map_into_left_body),
            Err(req) => {
                let message = "request bodies are taken as sent: Content-Encoding must be identity";
                let res = error_response(ApiError::new(ErrorCode::UnsupportedEncoding, message));
                Ok(req.into_response(res).map_into_right_body())
            }
        }
    }
}
