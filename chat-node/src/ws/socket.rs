//! One task per socket: a `select!` over client frames, frames from the bus, the
//! heartbeat and the node's shutdown. Everything a socket owns lives here.

use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessage, CloseCode, CloseReason, MessageStream, ProtocolError};
use chat_common::protocol::ServerFrame;
use tokio::sync::mpsc;

use super::frames::Connection;
use crate::bus::{frame_text, Outbound, OUTBOX_CAPACITY};
use crate::error::AppError;
use crate::session::SessionUser;
use crate::state::AppState;

/// Frames (and reassembled messages) above this close the socket with 1009.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// A socket silent for this long (no pong, no frame) is closed.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

fn reason(code: CloseCode, text: &str) -> Option<CloseReason> {
    Some(CloseReason {
        code,
        description: Some(text.to_owned()),
    })
}

/// Runs inside the `socket` span [`super::upgrade`] opens, and fills in its `conn`.
pub async fn run(
    state: AppState,
    current: SessionUser,
    mut ws: actix_ws::Session,
    stream: MessageStream,
) {
    let mut stream = stream
        .max_frame_size(MAX_FRAME_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME_BYTES);
    let (tx, mut outbox) = mpsc::channel(OUTBOX_CAPACITY);
    let conn_id = state
        .hub
        .register(current.user.id, &current.user.username, &current.tag, tx);
    tracing::Span::current().record("conn", conn_id);
    state.metrics.ws_connections.inc();
    tracing::info!("socket opened");
    let mut conn = Connection::new(state.clone(), current.user.clone(), conn_id);

    let close = match conn.setup().await {
        Ok(update_users) => {
            if ws.text(update_users).await.is_ok() {
                serve(&state, &mut conn, &mut ws, &mut stream, &mut outbox).await
            } else {
                None
            }
        }
        Err(err) => {
            if let Ok(frame) = frame_text(&ServerFrame::error(err.to_api(), None)) {
                let _ = ws.text(frame).await;
            }
            reason(CloseCode::Error, "could not load the directory")
        }
    };
    let _ = ws.close(close).await;

    state.hub.unregister(conn_id);
    let _transition = state.presence.transition().await;
    if !state.hub.is_connected(current.user.id) {
        match state.presence.disconnect(&current.user.username).await {
            Ok(true) => state.metrics.presence_changed(false),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "presence disconnect failed"),
        }
    }
    state.metrics.ws_connections.dec();
    tracing::info!("socket closed");
}

/// A reply that could not be encoded is a bug: log it and close with 1011.
fn internal_error(err: &AppError) -> Option<CloseReason> {
    tracing::error!(error = %err, "could not encode a reply");
    reason(CloseCode::Error, "internal error")
}

/// How long a draining socket waits for acknowledgements already on their way back from
/// Redis, so messages stored just before the drain are acknowledged rather than resent.
const FLUSH_IDLE: Duration = Duration::from_millis(150);
const FLUSH_MAX: Duration = Duration::from_secs(1);

async fn flush_outbox(ws: &mut actix_ws::Session, outbox: &mut mpsc::Receiver<Outbound>) {
    let deadline = tokio::time::Instant::now() + FLUSH_MAX;
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(FLUSH_IDLE, outbox.recv()).await {
            Ok(Some(Outbound::Text(text))) => {
                if ws.text(text).await.is_err() {
                    return;
                }
            }
            _ => return,
        }
    }
}

/// Runs until the socket should close; returns the close reason to send.
async fn serve(
    state: &AppState,
    conn: &mut Connection,
    ws: &mut actix_ws::Session,
    stream: &mut actix_ws::AggregatedMessageStream,
    outbox: &mut mpsc::Receiver<Outbound>,
) -> Option<CloseReason> {
    let mut heartbeat = tokio::time::interval(PING_INTERVAL);
    heartbeat.tick().await;
    let mut last_seen = Instant::now();
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => {
                flush_outbox(ws, outbox).await;
                return reason(CloseCode::Restart, "node is restarting; reconnect");
            }
            out = outbox.recv() => match out {
                Some(Outbound::Text(text)) => {
                    if ws.text(text).await.is_err() { return None; }
                }
                Some(Outbound::Close(code, text)) => {
                    return reason(CloseCode::from(code), text);
                }
                None => return reason(CloseCode::Again, "too slow to keep up; reconnect"),
            },
            msg = stream.recv() => {
                last_seen = Instant::now();
                match msg {
                    None => return None,
                    Some(Ok(AggregatedMessage::Text(text))) => {
                        let replies = match conn.handle_text(&text).await {
                            Ok(replies) => replies,
                            Err(e) => return internal_error(&e),
                        };
                        for reply in replies {
                            if ws.text(reply).await.is_err() { return None; }
                        }
                    }
                    Some(Ok(AggregatedMessage::Binary(_))) => {
                        let reply = match conn.reject_binary() {
                            Ok(reply) => reply,
                            Err(e) => return internal_error(&e),
                        };
                        if ws.text(reply).await.is_err() { return None; }
                    }
                    Some(Ok(AggregatedMessage::Ping(bytes))) => {
                        if ws.pong(&bytes).await.is_err() { return None; }
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => {}
                    Some(Ok(AggregatedMessage::Close(_))) => return None,
                    Some(Err(ProtocolError::Overflow)) => {
                        return reason(CloseCode::Size, "frames are at most 64 KiB");
                    }
                    Some(Err(e)) => {
                        tracing::info!(error = %e, "websocket protocol error");
                        return reason(CloseCode::Protocol, "protocol error");
                    }
                }
            }
            _ = heartbeat.tick() => {
                if last_seen.elapsed() > CLIENT_TIMEOUT {
                    return reason(CloseCode::Away, "no answer to pings");
                }
                if ws.ping(b"").await.is_err() { return None; }
            }
        }
    }
}
