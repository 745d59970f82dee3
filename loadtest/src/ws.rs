//! One WebSocket per chat user. A reader task owns the receiving half and routes every
//! frame as it arrives: acknowledgements and history answers to the transaction waiting
//! for them, the partner's messages to the run-wide counters with their delivery latency.
//! So nothing waits in a buffer while the user sleeps between transactions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_common::protocol::{ClientFrame, ServerFrame};
use chat_common::MessageId;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::totals::{lock, TOTALS};

/// How long a request over the socket may take before it counts as failed.
pub const REPLY_WAIT: Duration = Duration::from_secs(10);

pub type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
pub type Sink = tokio::sync::Mutex<SplitSink<Stream, Message>>;

/// Opens `/ws` with the session cookie, within [`REPLY_WAIT`].
pub async fn dial(
    url: &str,
    cookie: &str,
    config: Option<WebSocketConfig>,
    disable_nagle: bool,
) -> Result<Stream, String> {
    let mut req = url
        .into_client_request()
        .map_err(|e| format!("websocket request: {e}"))?;
    let cookie = HeaderValue::from_str(cookie).map_err(|e| format!("cookie header value: {e}"))?;
    req.headers_mut().insert("Cookie", cookie);
    let connect = tokio_tungstenite::connect_async_with_config(req, config, disable_nagle);
    let (stream, _) = tokio::time::timeout(REPLY_WAIT, connect)
        .await
        .map_err(|_| "websocket upgrade timed out".to_owned())?
        .map_err(|e| format!("websocket upgrade: {e}"))?;
    Ok(stream)
}

/// Sends one client frame as JSON text.
pub async fn send_frame(sink: &Sink, frame: &ClientFrame) -> Result<(), String> {
    let text = serde_json::to_string(frame).map_err(|e| format!("encode frame: {e}"))?;
    sink.lock()
        .await
        .send(Message::text(text))
        .await
        .map_err(|e| format!("send frame: {e}"))
}

/// What a request over the socket got back.
#[derive(Debug)]
pub enum Reply {
    Ack,
    History {
        oldest: Option<MessageId>,
        has_more: bool,
    },
    Error(String),
}

/// Requests waiting for their answer.
struct Waiting {
    me: String,
    partner: String,
    acks: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    history: Mutex<Option<oneshot::Sender<Reply>>>,
    /// Set when we close the socket ourselves.
    closing: AtomicBool,
}

pub struct Conn {
    sink: Sink,
    waiting: Arc<Waiting>,
    reader: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Conn {
    /// Opens `/ws` with the session cookie and reads the opening `updateUsers`.
    pub async fn open(url: &str, cookie: &str, me: &str, partner: &str) -> Result<Self, String> {
        let (sink, mut stream) = dial(url, cookie, None, false).await?.split();
        tokio::time::timeout(REPLY_WAIT, first_frame(&mut stream))
            .await
            .map_err(|_| "no updateUsers frame in time".to_owned())??;
        let waiting = Arc::new(Waiting {
            me: me.to_owned(),
            partner: partner.to_owned(),
            acks: Mutex::new(HashMap::new()),
            history: Mutex::new(None),
            closing: AtomicBool::new(false),
        });
        let reader = tokio::spawn(read_frames(stream, waiting.clone(), OpenSocket::count()));
        Ok(Self {
            sink: tokio::sync::Mutex::new(sink),
            waiting,
            reader,
        })
    }

    async fn send(&self, frame: &ClientFrame) -> Result<(), String> {
        send_frame(&self.sink, frame).await
    }

    async fn wait(rx: oneshot::Receiver<Reply>) -> Result<Reply, String> {
        match tokio::time::timeout(REPLY_WAIT, rx).await {
            Ok(Ok(Reply::Error(code))) => Err(format!("error frame: {code}")),
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err("socket closed before the reply".into()),
            Err(_) => Err(format!("no reply within {}s", REPLY_WAIT.as_secs())),
        }
    }

    /// Sends a `chatMessage` and waits for its echo, the acknowledgement.
    pub async fn chat(&self, peer: &str, text: String, client_id: String) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting.acks).insert(client_id.clone(), tx);
        let frame = ClientFrame::ChatMessage {
            peer: Some(peer.to_owned()),
            room: None,
            text,
            client_id: Some(client_id.clone()),
        };
        let sent = self.send(&frame).await;
        let result = match sent {
            Ok(()) => Self::wait(rx).await.map(|_| ()),
            Err(e) => Err(e),
        };
        lock(&self.waiting.acks).remove(&client_id);
        result
    }

    /// Asks for one page of history; returns the oldest id of the page and `hasMore`.
    pub async fn history(
        &self,
        peer: &str,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<(Option<MessageId>, bool), String> {
        let (tx, rx) = oneshot::channel();
        *lock(&self.waiting.history) = Some(tx);
        let frame = ClientFrame::ChatHistory {
            peer: Some(peer.to_owned()),
            room: None,
            before,
            limit: Some(limit),
        };
        self.send(&frame).await?;
        match Self::wait(rx).await? {
            Reply::History { oldest, has_more } => Ok((oldest, has_more)),
            other => Err(format!("unexpected reply to chatHistory: {other:?}")),
        }
    }

    pub async fn close(&self) {
        self.waiting.closing.store(true, Ordering::Relaxed);
        let _ = self.sink.lock().await.close().await;
    }
}

async fn first_frame(stream: &mut SplitStream<Stream>) -> Result<(), String> {
    while let Some(msg) = stream.next().await {
        match msg.map_err(|e| format!("websocket read: {e}"))? {
            Message::Text(t) => {
                return match serde_json::from_str::<ServerFrame>(t.as_str()) {
                    Ok(ServerFrame::UpdateUsers { .. }) => Ok(()),
                    Ok(_) | Err(_) => Err(format!("first frame is not updateUsers: {t}")),
                };
            }
            Message::Close(_) => break,
            _ => continue,
        }
    }
    Err("socket closed before updateUsers".into())
}

/// Counts a socket in `open_sockets` while its reader task exists, aborted or not.
struct OpenSocket;

impl OpenSocket {
    fn count() -> Self {
        TOTALS.open_sockets.fetch_add(1, Ordering::Relaxed);
        Self
    }
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        TOTALS.open_sockets.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn read_frames(mut stream: SplitStream<Stream>, waiting: Arc<Waiting>, open: OpenSocket) {
    while let Some(Ok(msg)) = stream.next().await {
        match msg {
            Message::Text(t) => route(&waiting, t.as_str()),
            Message::Close(_) => break,
            _ => {}
        }
    }
    // Dropping the waiting senders tells their transactions the socket is gone.
    lock(&waiting.acks).clear();
    lock(&waiting.history).take();
    drop(open);
    if !waiting.closing.load(Ordering::Relaxed) {
        TOTALS.closed_early.fetch_add(1, Ordering::Relaxed);
    }
}

/// Hands one server frame to whoever waits for it, or counts it.
fn route(waiting: &Waiting, text: &str) {
    let frame = match serde_json::from_str::<ServerFrame>(text) {
        Ok(f) => f,
        Err(_) => {
            *lock(&TOTALS.error_frames)
                .entry("unparseable_frame".into())
                .or_default() += 1;
            return;
        }
    };
    match frame {
        ServerFrame::ChatMessage { message } => {
            if message.from == waiting.me {
                if let Some(id) = &message.client_id {
                    if let Some(tx) = lock(&waiting.acks).remove(id) {
                        let _ = tx.send(Reply::Ack);
                    }
                }
            } else if message.from == waiting.partner {
                TOTALS.from_partner.fetch_add(1, Ordering::Relaxed);
                crate::window::from_partner();
                let age = chrono::Utc::now() - message.sent_at;
                if let Some(us) = age.num_microseconds() {
                    lock(&TOTALS.delivery_us).push(us.max(0) as u64);
                }
            } else {
                TOTALS.other_messages.fetch_add(1, Ordering::Relaxed);
            }
        }
        ServerFrame::ChatHistory {
            messages, has_more, ..
        } => {
            if let Some(tx) = lock(&waiting.history).take() {
                let oldest = messages.first().map(|m| m.id);
                let _ = tx.send(Reply::History { oldest, has_more });
            }
        }
        ServerFrame::Error {
            code, reference, ..
        } => {
            let code = code.to_string();
            *lock(&TOTALS.error_frames).entry(code.clone()).or_default() += 1;
            let waiter = match reference {
                Some(r) => lock(&waiting.acks).remove(&r),
                None => lock(&waiting.history).take(),
            };
            if let Some(tx) = waiter {
                let _ = tx.send(Reply::Error(code));
            }
        }
        ServerFrame::UpdateUsers { .. }
        | ServerFrame::Presence { .. }
        | ServerFrame::Typing { .. }
        | ServerFrame::DoneTyping { .. }
        | ServerFrame::Sync { .. }
        | ServerFrame::Rooms { .. }
        | ServerFrame::Room { .. }
        | ServerFrame::RoomLeft { .. }
        | ServerFrame::Read { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting() -> Waiting {
        Waiting {
            me: "lt_r_c0".into(),
            partner: "lt_r_c1".into(),
            acks: Mutex::new(HashMap::new()),
            history: Mutex::new(None),
            closing: AtomicBool::new(false),
        }
    }

    fn message(from: &str, to: &str, client_id: &str) -> String {
        serde_json::json!({"type": "chatMessage", "message": {
            "id": 42, "channel": 1, "from": from, "to": to, "text": "hi",
            "sentAt": "2026-01-01T00:00:00.123456Z", "clientId": client_id}})
        .to_string()
    }

    #[test]
    fn the_echo_of_our_own_message_is_its_acknowledgement() {
        let w = waiting();
        let (tx, mut rx) = oneshot::channel();
        lock(&w.acks).insert("c-1".into(), tx);
        route(&w, &message("lt_r_c1", "lt_r_c0", "c-1"));
        assert!(
            rx.try_recv().is_err(),
            "the partner's clientId is not our ack"
        );
        route(&w, &message("lt_r_c0", "lt_r_c1", "c-1"));
        assert!(matches!(rx.try_recv(), Ok(Reply::Ack)));
        assert!(lock(&w.acks).is_empty());
    }

    #[test]
    fn history_answers_and_errors_reach_their_waiters() {
        let w = waiting();
        let (tx, mut rx) = oneshot::channel();
        *lock(&w.history) = Some(tx);
        route(
            &w,
            r#"{"type":"chatHistory","peer":"lt_r_c1","channel":1,"hasMore":true,
                "messages":[{"id":7,"channel":1,"from":"a","to":"b","text":"t",
                "sentAt":"2026-01-01T00:00:00Z","clientId":null}]}"#,
        );
        match rx.try_recv() {
            Ok(Reply::History { oldest, has_more }) => {
                assert_eq!(oldest.map(MessageId::get), Some(7));
                assert!(has_more);
            }
            other => panic!("expected a history reply, got {other:?}"),
        }
        let (tx, mut rx) = oneshot::channel();
        lock(&w.acks).insert("c-2".into(), tx);
        route(
            &w,
            r#"{"type":"error","code":"rate_limited","message":"slow","ref":"c-2"}"#,
        );
        assert!(matches!(rx.try_recv(), Ok(Reply::Error(c)) if c == "rate_limited"));
    }
}
