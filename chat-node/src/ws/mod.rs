//! WebSockets: the route ([`configure`]), the upgrade ([`upgrade`]) and how fast the node
//! admits them ([`admission`]), one task per socket ([`socket`]) writing through its own
//! response body ([`body`]), what each client frame does ([`frames`]), the per-socket rate
//! limits ([`rate`]) and the node's one heartbeat for every socket ([`heartbeat`]).

pub mod admission;
mod body;
mod frames;
mod heartbeat;
mod origin;
pub mod rate;
mod rooms;
mod socket;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chat_common::ErrorCode;
use tracing::Instrument;

use crate::bus::Outbox;
use crate::config::Config;
use crate::error::AppError;
use crate::routes::resource;
use crate::session::SessionUser;
use crate::state::AppState;
pub use admission::{Admission, Refused};
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

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/ws").route(web::get().to(upgrade)));
}

pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    current: SessionUser,
    state: web::Data<AppState>,
    limits: web::Data<SocketLimits>,
) -> Result<HttpResponse, actix_web::Error> {
    if state.is_draining() {
        return Err(
            AppError::client(ErrorCode::Unavailable, "this node is draining; reconnect").into(),
        );
    }
    let set_up = limits.admission.admit().await.map_err(|refused| {
        state.metrics.ws_admission_refused.inc();
        let why = match refused {
            Refused::Rate(_) => "this node takes new sockets at a bounded rate; retry later",
            Refused::Busy => "this node is setting up as many sockets as it can; retry later",
        };
        AppError::retry_later(ErrorCode::Unavailable, why, refused.retry_after().as_secs())
    })?;
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
