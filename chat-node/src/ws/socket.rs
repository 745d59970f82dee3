//! One task per socket: a `select!` over client frames, close requests (from the hub or
//! the socket's outbox), the stall deadline, the heartbeat and the node's shutdown.
//! Everything a socket owns lives here. The task never waits on the client: what it sends
//! goes into the socket's [`Outbox`], so its timers fire whether or not the client reads.

use std::io;
use std::time::{Duration, Instant};

use actix_ws::{AggregatedMessage, MessageStream, ProtocolError};
use chat_common::protocol::ServerFrame;

use super::frames::Connection;
use super::SocketLimits;
use crate::bus::outbox::{STALLED, TOO_SLOW};
use crate::bus::{frame_text, Closing, ConnId, Frame, Outbox};
use crate::session::SessionUser;
use crate::state::AppState;

/// Frames (and reassembled messages) above this close the socket with 1009.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// A socket silent for this long (no pong, no frame) is closed.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

const RESTART: Closing = Closing::new(1012, "node is restarting; reconnect");

/// A registered socket: its id in the hub, its outbox and its limits.
pub struct Socket {
    pub id: ConnId,
    pub outbox: Outbox,
    pub limits: SocketLimits,
}

/// Runs inside the `socket` span [`super::upgrade`] opens.
pub async fn run(state: AppState, current: SessionUser, socket: Socket, stream: MessageStream) {
    let mut stream = stream
        .max_frame_size(MAX_FRAME_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME_BYTES);
    state.metrics.ws_connections.inc();
    tracing::info!("socket opened");
    let outbox = &socket.outbox;
    let mut conn = Connection::new(
        state.clone(),
        current.user.clone(),
        socket.id,
        &socket.limits,
    );

    let close = match conn.setup().await {
        Ok(update_users) => {
            outbox.open(Frame::Text(update_users));
            serve(&state, &mut conn, &socket, &mut stream).await
        }
        Err(err) => {
            if let Ok(frame) = frame_text(&ServerFrame::error(err.to_api(), None)) {
                outbox.open(Frame::Text(frame));
            }
            Some(Closing::new(1011, "could not load the directory"))
        }
    };
    outbox.close(close);

    state.hub.unregister(socket.id);
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

/// How long a draining socket waits for acknowledgements already on their way back from
/// Redis, so messages stored just before the drain are acknowledged rather than resent.
const FLUSH_IDLE: Duration = Duration::from_millis(150);
const FLUSH_MAX: Duration = Duration::from_secs(1);

/// Returns once no delivery has arrived for [`FLUSH_IDLE`], or after [`FLUSH_MAX`].
async fn await_deliveries(outbox: &Outbox) {
    let deadline = tokio::time::Instant::now() + FLUSH_MAX;
    let mut seen = outbox.pushed();
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(FLUSH_IDLE).await;
        let now = outbox.pushed();
        if now == seen {
            return;
        }
        seen = now;
    }
}

/// A socket that falls behind is closed without what waits for it: the client would not
/// read it, and it reconnects and syncs.
fn give_up(state: &AppState, outbox: &Outbox, why: Closing, reason: &'static str) -> Closing {
    tracing::warn!(reason, "closing a socket that does not read");
    state
        .metrics
        .ws_forced_closes
        .with_label_values(&[reason])
        .inc();
    outbox.abandon(why);
    why
}

/// Runs until the socket should close; returns the close frame to send.
async fn serve(
    state: &AppState,
    conn: &mut Connection,
    socket: &Socket,
    stream: &mut actix_ws::AggregatedMessageStream,
) -> Option<Closing> {
    let outbox = &socket.outbox;
    let send_timeout = socket.limits.send_timeout;
    let mut heartbeat = tokio::time::interval(PING_INTERVAL);
    heartbeat.tick().await;
    let mut last_seen = Instant::now();
    loop {
        let stall = outbox.stall_deadline(send_timeout);
        tokio::select! {
            _ = state.shutdown.cancelled() => {
                await_deliveries(outbox).await;
                return Some(RESTART);
            }
            closing = outbox.closing() => {
                if closing == TOO_SLOW {
                    return Some(give_up(state, outbox, closing, "slow_reader"));
                }
                return Some(closing);
            }
            // Frames have waited and the client took none of them: it stopped reading.
            _ = tokio::time::sleep_until(stall.unwrap_or_else(tokio::time::Instant::now)),
                if stall.is_some() => {
                let stalled = outbox
                    .stall_deadline(send_timeout)
                    .is_some_and(|d| d <= tokio::time::Instant::now());
                if stalled {
                    return Some(give_up(state, outbox, STALLED, "stalled"));
                }
            }
            msg = stream.recv() => {
                last_seen = Instant::now();
                match msg {
                    None | Some(Ok(AggregatedMessage::Close(_))) => return None,
                    Some(Ok(msg)) => match conn.handle(msg).await {
                        // A reply that does not fit makes `closing` fire next.
                        Ok(Some(reply)) => {
                            outbox.push(reply);
                        }
                        Ok(None) => {}
                        Err(close) => return Some(close),
                    },
                    Some(Err(ProtocolError::Overflow)) => {
                        return Some(Closing::new(1009, "frames are at most 64 KiB"));
                    }
                    Some(Err(ProtocolError::Io(e))) if e.kind() == io::ErrorKind::InvalidData => {
                        return Some(Closing::new(1007, "text frames are UTF-8"));
                    }
                    Some(Err(e)) => {
                        tracing::info!(error = %e, "websocket protocol error");
                        return Some(Closing::new(1002, "protocol error"));
                    }
                }
            }
            _ = heartbeat.tick() => {
                if last_seen.elapsed() > CLIENT_TIMEOUT {
                    return Some(Closing::new(1001, "no answer to pings"));
                }
                outbox.push(Frame::Ping);
            }
        }
    }
}
