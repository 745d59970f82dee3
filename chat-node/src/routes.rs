//! What every route shares, whichever module registers it: JSON answers for unknown paths
//! and methods, the span and metrics around each request, security headers, refusing
//! encoded bodies, and which proxies are believed about the client. It sits below `http`
//! and `ws` so that neither needs the other.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::EitherBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use chat_common::error::ApiError;
use chat_common::ErrorCode;
use futures_util::FutureExt;
use ipnet::IpNet;
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

/// The client has no inline script or style; sockets go to the page's own host.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'self'";
/// One year: browsers that saw the site over TLS never try plain HTTP again.
const HSTS: &str = "max-age=31536000";

/// The proxies in front of the node whose `X-Forwarded-*` headers are believed; anyone
/// else could write them.
#[derive(Debug, Clone)]
pub struct TrustedProxies(Arc<[IpNet]>);

impl TrustedProxies {
    pub fn new(nets: &[IpNet]) -> Self {
        Self(nets.into())
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer, or when the peer is a trusted proxy, the rightmost
    /// `X-Forwarded-For` entry that is not one (entries further left are the client's to
    /// write).
    pub fn client(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip().to_canonical();
        if !self.trusts(peer) {
            return Some(peer);
        }
        let forwarded: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        let mut client = peer;
        for hop in forwarded.iter().rev() {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => client = ip.to_canonical(),
                // Garbage: the hop that added it is the last one known.
                Err(_) => break,
            }
            if !self.trusts(client) {
                break;
            }
        }
        Some(client)
    }

    /// Whether the client reached the service over TLS, as a trusted proxy says (the node
    /// itself serves plain HTTP).
    pub fn tls(&self, req: &HttpRequest) -> bool {
        req.peer_addr()
            .is_some_and(|peer| self.trusts(peer.ip().to_canonical()))
            && req
                .headers()
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
    }
}

/// Security headers on every response: the CSP, `nosniff`, `no-referrer`, and HSTS when
/// the client came over TLS. An error from an inner middleware (the session store) is
/// turned into its response here, so that it carries them too.
pub fn security_headers<S, B>(
    req: ServiceRequest,
    srv: &S,
) -> impl Future<Output = Result<ServiceResponse<B>, actix_web::Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    let tls = req
        .app_data::<web::Data<TrustedProxies>>()
        .is_some_and(|proxies| proxies.tls(req.request()));
    srv.call(req).map(move |res| match res {
        Ok(mut res) => {
            add_security_headers(res.headers_mut(), tls);
            Ok(res)
        }
        Err(e) => {
            let mut res = e.error_response();
            add_security_headers(res.headers_mut(), tls);
            Err(InternalError::from_response(e, res).into())
        }
    })
}

fn add_security_headers(headers: &mut HeaderMap, tls: bool) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if tls {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
}
