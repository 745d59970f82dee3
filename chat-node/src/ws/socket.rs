//! One task per socket: a `select!` over client frames, close requests (from the hub, the
//! node's heartbeat or the socket's outbox) and the node's shutdown. Everything a socket
//! owns lives here. The task never waits on the client: what it sends goes into the
//! socket's [`Outbox`]. It holds no timer: pings, the silence timeout and the stall
//! deadline are the node's heartbeat's ([`super::heartbeat`]).
//!
//! An idle socket's task is only the `select!` loop: setting up, handling a frame and
//! leaving are boxed, so their (much larger) futures take memory only while they run.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use actix_ws::{AggregatedMessage, MessageStream, ProtocolError};
use chat_common::protocol::ServerFrame;

use super::admission::SetUp;
use super::frames::Connection;
use super::SocketLimits;
use crate::bus::outbox::{STALLED, TOO_SLOW};
use crate::bus::{frame_text, Closing, ConnId, Frame, Outbox};
use crate::state::AppState;
use crate::storage::users::User;

/// Frames (and reassembled messages) above this close the socket with 1009.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

const RESTART: Closing = Closing::new(1012, "node is restarting; reconnect");

/// A registered socket: its id in the hub, its outbox and its limits.
pub struct Socket {
    pub id: ConnId,
    pub outbox: Outbox,
    pub limits: SocketLimits,
}

/// Runs inside the `socket` span [`super::upgrade`] opens; `set_up` is given back to
/// admission once the socket's first frames are queued.
pub async fn run(
    state: Arc<AppState>,
    user: User,
    socket: Socket,
    set_up: SetUp,
    stream: MessageStream,
) {
    let mut stream = stream
        .max_frame_size(MAX_FRAME_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_FRAME_BYTES);
    state.metrics.ws_connections.inc();
    tracing::info!("socket opened");
    let outbox = &socket.outbox;
    let mut conn = Connection::new(state.clone(), user, socket.id, &socket.limits);

    let close = match Box::pin(conn.setup()).await {
        Ok(firsts) => {
            outbox.open_with(firsts.into_iter().map(Frame::Text).collect());
            drop(set_up);
            serve(&state, &mut conn, &socket, &mut stream).await
        }
        Err(err) => {
            drop(set_up);
            if let Ok(frame) = frame_text(&ServerFrame::error(err.to_api(), None)) {
                outbox.open(Frame::Text(frame));
            }
            Some(Closing::new(1011, "could not load the directory"))
        }
    };
    outbox.close(close);
    Box::pin(leave(&state, conn.user(), socket.id)).await;
    state.metrics.ws_connections.dec();
    tracing::info!("socket closed");
}

/// The socket is gone: its user goes offline unless another socket here holds them.
async fn leave(state: &AppState, user: &User, id: ConnId) {
    state.hub.unregister(id);
    let _transition = state.presence.transition(user.id).await;
    if !state.hub.is_connected(user.id) {
        match state.presence.disconnect(user.id, &user.username).await {
            Ok(true) => state.metrics.presence_changed(false),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "presence disconnect failed"),
        }
    }
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
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => {
                Box::pin(await_deliveries(outbox)).await;
                return Some(RESTART);
            }
            closing = outbox.closing() => {
                return Some(match closing {
                    TOO_SLOW => give_up(state, outbox, closing, "slow_reader"),
                    // Frames have waited and the client took none of them.
                    STALLED => give_up(state, outbox, closing, "stalled"),
                    closing => closing,
                });
            }
            msg = stream.recv() => {
                outbox.heard();
                match msg {
                    None | Some(Ok(AggregatedMessage::Close(_))) => return None,
                    Some(Ok(msg)) => match Box::pin(conn.handle(msg)).await {
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
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use actix_web::test::TestRequest;
    use actix_web::{web, FromRequest};

    use super::*;
    use crate::bus::{Hub, Publisher};
    use crate::metrics::Metrics;
    use crate::presence::Presence;
    use crate::redis_store::Redis;
    use crate::state::{Limits, Services};
    use crate::storage::writer::{Writer, WriterConfig};
    use crate::storage::Db;
    use crate::ws::{Admission, SocketLimits};

    fn size_of_future<F: Future>(_: &F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Nothing here connects: pools and the writer open connections on first use.
    fn state() -> Arc<AppState> {
        let metrics = Metrics::new().unwrap();
        let url = "mysql://root@127.0.0.1:3306/unused";
        let db = Db::new(url, 1, metrics.db_pool_wait.clone()).unwrap();
        let redis = Redis::new(
            "redis://127.0.0.1:6379",
            "t",
            1,
            metrics.redis_pool_wait.clone(),
        )
        .unwrap();
        let (hub, _) = Hub::new(redis.keys.clone(), metrics.clone(), Duration::ZERO);
        let publisher = Publisher::new(redis.clone(), metrics.clone());
        let writer = Writer::start(
            url,
            WriterConfig {
                max_batch: 1,
                queue: 1,
            },
            publisher.deliver(),
            metrics.writer(),
        )
        .unwrap();
        let services = Services {
            db,
            presence: Presence::new(redis.clone(), "n".into()),
            redis,
            hub,
            publisher,
            writer,
        };
        let limits = Limits {
            bcrypt_cost: 4,
            login_max_failures: 1,
            login_max_failures_per_address: 1,
            register_max_per_address: 1,
            bcrypt_threads: 1,
            bcrypt_queue: 1,
            ws_rate: 1,
            ws_burst: 1,
            allowed_origins: Vec::new(),
            rooms: crate::storage::rooms::RoomLimits {
                max_members: 2,
                rooms_per_user: 1,
            },
            room_creations_per_minute: 1,
        };
        Arc::new(AppState::new(services, metrics, limits))
    }

    /// What an idle socket's task holds: docs/benchmarks.md quotes these figures.
    #[tokio::test]
    async fn an_idle_socket_task_is_small() {
        let (req, mut payload) = TestRequest::get()
            .insert_header(("upgrade", "websocket"))
            .insert_header(("connection", "upgrade"))
            .insert_header(("sec-websocket-version", "13"))
            .insert_header(("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="))
            .to_http_parts();
        let body = web::Payload::from_request(&req, &mut payload)
            .await
            .unwrap();
        let (_, _, stream) = actix_ws::handle(&req, body).unwrap();
        let admission = Arc::new(Admission::new(1, 1, 1, 0));
        let set_up = admission.admit().await.unwrap();
        let limits = SocketLimits {
            history_rate: 1,
            history_burst: 1,
            outbox_bytes: 1024,
            send_timeout: Duration::from_secs(1),
            max_per_user: 1,
            admission,
        };
        let socket = Socket {
            id: 1,
            outbox: Outbox::new(1024),
            limits,
        };
        let user = User {
            id: 1,
            username: "ann".into(),
        };
        let task = run(state(), user, socket, set_up, stream);
        let task_bytes = size_of_future(&task);
        let connection = std::mem::size_of::<Connection>();
        println!("socket task future: {task_bytes} bytes, of which Connection {connection}");
        assert!(task_bytes <= 2048, "socket task future: {task_bytes} bytes");
        assert!(connection <= 512, "Connection: {connection} bytes");
    }
}
