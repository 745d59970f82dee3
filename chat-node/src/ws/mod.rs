//! WebSockets: the route ([`configure`]), the upgrade ([`upgrade`]), one task per socket
//! ([`socket`]), what each client frame does ([`frames`]) and the per-socket rate limit
//! ([`rate`]).

mod frames;
mod origin;
pub mod rate;
mod socket;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chat_common::ErrorCode;
use tracing::Instrument;

use crate::error::AppError;
use crate::routes::resource;
use crate::session::SessionUser;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/ws").route(web::get().to(upgrade)));
}

pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    current: SessionUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    if state.is_draining() {
        return Err(
            AppError::client(ErrorCode::Unavailable, "this node is draining; reconnect").into(),
        );
    }
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
    let (response, ws, stream) = actix_ws::handle(&req, body).map_err(|e| {
        AppError::client(
            ErrorCode::BadRequest,
            format!("not a WebSocket handshake: {e}"),
        )
    })?;
    // A root span: the socket outlives the upgrade request. `socket::run` records `conn`
    // once the hub has assigned it.
    let span = tracing::info_span!(
        parent: None,
        "socket",
        user_id = current.user.id,
        conn = tracing::field::Empty,
    );
    let state = state.get_ref().clone();
    let task = state
        .sockets
        .track_future(socket::run(state.clone(), current, ws, stream).instrument(span));
    actix_web::rt::spawn(task);
    Ok(response)
}
