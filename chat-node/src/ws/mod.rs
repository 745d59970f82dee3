//! WebSockets: the route ([`configure`]), the upgrade ([`upgrade`]) and how fast the node
//! admits them ([`admission`], applied by [`admit`] before the session is read), one task
//! per socket ([`socket`]) writing through its own response body ([`body`]), what each
//! client frame does ([`frames`]), the per-socket rate limits ([`rate`]) and the node's
//! one heartbeat for every socket ([`heartbeat`]).

pub mod admission;
mod body;
mod frames;
mod heartbeat;
mod origin;
pub mod rate;
mod rooms;
mod socket;

use std::future::{ready, Ready};
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use chat_common::ErrorCode;
use tracing::Instrument;

use crate::bus::Outbox;
use crate::config::Config;
use crate::error::AppError;
use crate::routes::resource;
use crate::session::{SessionUser, SESSION_COOKIE};
use crate::state::AppState;
pub use admission::{Admission, Refused, SetUp};
pub use body::WRITE_CHUNK;
pub use heartbeat::run_heartbeat;

/// What one socket may cost the node, from the flags; app data beside [`AppState`]. The
/// one [`Admission`] is shared by every worker.
#[derive(Debug, Clone)]
pub struct SocketLimits {
    pub history_rate: u32,
    pub history_burst: u32,
    pub outbox_bytes: usize,
    pub send_timeout: Duration,
    pub max_per_user: usize,
    pub admission: Arc<Admission>,
}

impl SocketLimits {
    pub fn new(config: &Config) -> Self {
        Self {
            history_rate: config.ws_history_rate,
            history_burst: config.ws_history_burst,
            outbox_bytes: usize::try_from(config.ws_outbox_bytes).unwrap_or(usize::MAX),
            send_timeout: Duration::from_secs(config.ws_send_timeout_secs),
            max_per_user: usize::try_from(config.ws_max_sockets_per_user).unwrap_or(usize::MAX),
            admission: Arc::new(Admission::new(
                config.ws_admit_rate,
                config.ws_admit_burst,
                usize::try_from(config.ws_admit_in_flight).unwrap_or(usize::MAX),
                usize::try_from(config.ws_admit_queue).unwrap_or(usize::MAX),
            )),
        }
    }
}

const UPGRADE_PATH: &str = "/ws";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource(UPGRADE_PATH).route(web::get().to(upgrade)));
}

/// Admits upgrades before the session middleware reads the session, so that an upgrade
/// refused in a reconnect storm costs the node no Redis read. Only upgrades carrying a
/// session cookie are counted: without one the session middleware reads nothing and the
/// handler answers 401, and such requests must not use up the node's admission.
pub async fn admit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let counted = req.method() == Method::GET
        && req.path() == UPGRADE_PATH
        && req.cookie(SESSION_COOKIE).is_some();
    if counted {
        match admit_upgrade(&req).await {
            Ok(set_up) => {
                req.extensions_mut().insert(set_up);
            }
            Err(refused) => {
                let res = refused.error_response();
                return Ok(req.into_response(res).map_into_right_body());
            }
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}

async fn admit_upgrade(req: &ServiceRequest) -> Result<SetUp, AppError> {
    let (Some(state), Some(limits)) = (
        req.app_data::<web::Data<AppState>>(),
        req.app_data::<web::Data<SocketLimits>>(),
    ) else {
        return Err(AppError::Internal("the app has no socket limits".into()));
    };
    if state.is_draining() {
        return Err(AppError::client(
            ErrorCode::Unavailable,
            "this node is draining; reconnect",
        ));
    }
    limits.admission.admit().await.map_err(|refused| {
        state.metrics.ws_admission_refused.inc();
        let why = match refused {
            Refused::Rate(_) => "this node takes new sockets at a bounded rate; retry later",
            Refused::Busy => "this node is setting up as many sockets as it can; retry later",
        };
        AppError::retry_later(ErrorCode::Unavailable, why, refused.retry_after().as_secs())
    })
}

/// The set-up [`admit`] granted this upgrade.
impl FromRequest for SetUp {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Without a session cookie the upgrade was not admitted, and `SessionUser`,
        // extracted first, has already refused it with 401.
        ready(req.extensions_mut().remove::<SetUp>().ok_or_else(|| {
            AppError::Internal("an upgrade reached its handler without admission".into())
        }))
    }
}

pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    current: SessionUser,
    set_up: SetUp,
    state: web::Data<AppState>,
    limits: web::Data<SocketLimits>,
) -> Result<HttpResponse, actix_web::Error> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok());
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if !origin::allowed(origin, host, &state.limits.allowed_origins) {
        return Err(AppError::client(
            ErrorCode::OriginNotAllowed,
            "this origin may not open a WebSocket here",
        )
        .into());
    }
    // actix-ws's session is not used: frames go through the outbox and `body`.
    let (handshake, _session, stream) = actix_ws::handle(&req, body).map_err(|e| {
        AppError::client(
            ErrorCode::BadRequest,
            format!("not a WebSocket handshake: {e}"),
        )
    })?;
    let limits = limits.get_ref().clone();
    let outbox = Outbox::new(limits.outbox_bytes);
    let SessionUser { user, tag } = current;
    let id = state
        .hub
        .register(&user, &tag, outbox.clone(), limits.max_per_user)
        .map_err(|_| {
            AppError::client(
                ErrorCode::TooManyConnections,
                format!(
                    "at most {} open sockets per user on one node",
                    limits.max_per_user
                ),
            )
        })?;
    // A root span: the socket outlives the upgrade request.
    let span = tracing::info_span!(parent: None, "socket", user_id = user.id, conn = id);
    let socket = socket::Socket {
        id,
        outbox: outbox.clone(),
        limits,
    };
    let state = state.into_inner();
    let task = state
        .sockets
        .track_future(socket::run(state.clone(), user, socket, set_up, stream).instrument(span));
    actix_web::rt::spawn(task);
    Ok(body::respond(handshake, outbox))
}
