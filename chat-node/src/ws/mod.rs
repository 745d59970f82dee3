//! WebSockets: the upgrade ([`upgrade`]), one task per socket ([`socket`]), what each
//! client frame does ([`frames`]) and the per-socket rate limit ([`rate`]).

mod frames;
mod origin;
pub mod rate;
mod socket;

use actix_session::Session;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chat_common::ErrorCode;

use crate::error::AppError;
use crate::http::current_user;
use crate::state::AppState;

pub async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    session: Session,
    state: web::Data<AppState>,
) -> Result<HttpResponse, actix_web::Error> {
    if state.is_draining() {
        return Err(
            AppError::client(ErrorCode::Unavailable, "this node is draining; reconnect").into(),
        );
    }
    let current = current_user(&session)?;
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
    let state = state.get_ref().clone();
    let task = state
        .sockets
        .track_future(socket::run(state.clone(), current, ws, stream));
    actix_web::rt::spawn(task);
    Ok(response)
}
