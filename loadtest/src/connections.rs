//! The `connections` scenario: each goose user logs in over HTTP, opens one WebSocket and
//! holds it until the run ends, sending no chat message.
//!
//! - The TCP socket is bound to a loopback source address of its own before it connects
//!   (127.0.0.2, 127.0.0.3, … by user number, [`plan::source_addr`]), so tens of thousands
//!   of sockets to one node never run out of ephemeral ports.
//! - A held socket behaves like an idle browser tab: its task keeps reading (tungstenite
//!   answers the server's pings while it reads), sends a WebSocket ping every 20 s, and
//!   when the server closes it (say 1013 "too slow" in a presence storm) opens it again
//!   after a jittered backoff; such closes and reconnects are counted. As the browser
//!   client does: after a 1012 (the node drains) the first attempt is spread over a
//!   second and goes to another node (`LOADTEST_RECONNECT_HOSTS`, default
//!   `LOADTEST_HOSTS`; an attempt that fails otherwise than by a refusal also moves on),
//!   and once open again the socket `sync`s from the highest message id it has seen,
//!   paging while `hasMore`, before it counts as back ([`resync`]).
//! - An upgrade refused with 503, or a socket closed with 1013 before its `updateUsers`
//!   (admission control), is tried again after a jittered backoff that honours
//!   `Retry-After`; such retries are counted, not failed. A login answered 503 likewise.
//! - `WS connect` (goose request metric) is the upgrade plus the first `updateUsers` frame
//!   of the attempt that succeeded.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use goose::prelude::*;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::gate::Gate;
use crate::plan::{self, Kind};
use crate::totals::lock;
use crate::{fail, login, NEXT_USER, SETTINGS};

/// A browser-like keep-alive: one WebSocket ping this often.
pub const PING_EVERY: Duration = Duration::from_secs(20);
/// Upgrade plus `updateUsers`; past this the attempt fails (a loaded node is slow, not
/// refusing).
const CONNECT_WAIT: Duration = Duration::from_secs(60);
/// Attempts at one socket before the user gives up.
pub const MAX_ATTEMPTS: u32 = 12;
/// How long a closing socket waits for the server's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

type Stream = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Run-wide counters of this scenario; printed after goose's report.
#[derive(Default)]
pub struct Totals {
    pub opened: AtomicU64,
    /// Users whose socket never opened: refused too often, or another error.
    pub failed: AtomicU64,
    /// Users whose registration or login failed (not 503s, which are retried).
    pub login_failed: AtomicU64,
    /// Upgrade plus `updateUsers` of each socket opened, in microseconds.
    pub connect_us: Mutex<Vec<u64>>,
    pub retried_503: AtomicU64,
    pub retried_1013: AtomicU64,
    /// First connects that failed otherwise (5xx, reset, timeout) and were tried again.
    pub retried_other: AtomicU64,
    /// `presence` frames that came before a socket's `updateUsers` (PROTOCOL.md sends
    /// `updateUsers` first); tolerated, counted.
    pub presence_first: AtomicU64,
    /// Sockets held now.
    pub held: AtomicI64,
    /// Sockets opened again after the server closed them, how long that took, attempts
    /// that failed otherwise than by a refusal, and tabs that gave up.
    pub reconnects: AtomicU64,
    pub reconnect_us: Mutex<Vec<u64>>,
    pub reconnect_failures: AtomicU64,
    /// Why those attempts failed, digits taken out.
    pub reconnect_reasons: Mutex<HashMap<String, u64>>,
    pub gave_up: AtomicU64,
    /// Reconnected sockets whose `sync` walk finished, the time from the server's close
    /// to that (µs), messages they received (distinct ids) by `sync`, and sync walks that
    /// failed. With `LOADTEST_SYNC_EXPECT=k`: tabs that had received exactly, fewer or
    /// more than `k` messages in all when their walk ended.
    pub resynced: AtomicU64,
    pub resync_us: Mutex<Vec<u64>>,
    pub synced_messages: AtomicU64,
    pub sync_failed: AtomicU64,
    pub sync_exact: AtomicU64,
    pub sync_short: AtomicU64,
    pub sync_extra: AtomicU64,
    pub last_resync_ms: AtomicU64,
    pub closed_by_server: AtomicU64,
    pub close_codes: Mutex<HashMap<String, u64>>,
    pub text_frames: AtomicU64,
    pub presence_frames: AtomicU64,
    pub error_frames: AtomicU64,
    pub server_pings: AtomicU64,
    pub pings_sent: AtomicU64,
    pub pongs: AtomicU64,
    /// When the first user began logging in, and when the last socket opened.
    pub first_start: OnceLock<Instant>,
    pub last_open: Mutex<Option<Instant>>,
}

pub static TOTALS: std::sync::LazyLock<Totals> = std::sync::LazyLock::new(Totals::default);

static ALL_OPEN: AtomicBool = AtomicBool::new(false);

/// Watches for this process's `target` sockets to be held (each past its `updateUsers`),
/// then prints one `all_open:` line (for scripts: the wall clock in Unix ms) and lets
/// [`all_open`] answer true. Without a target (a mix of scenarios) it is true at once.
pub fn watch(target: Option<usize>) {
    let Some(target) = target else {
        ALL_OPEN.store(true, Ordering::Relaxed);
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if TOTALS.held.load(Ordering::Relaxed) >= target as i64 {
                break;
            }
        }
        ALL_OPEN.store(true, Ordering::Relaxed);
        let after = TOTALS
            .first_start
            .get()
            .map_or(0.0, |t| t.elapsed().as_secs_f64());
        println!(
            "all_open: sockets {target} after_s {after:.2} unix_ms {}",
            crate::window::now_ms()
        );
    });
}

/// Whether every socket of this process is held (see [`watch`]).
pub fn all_open() -> bool {
    ALL_OPEN.load(Ordering::Relaxed)
}

/// Why an attempt to open a socket did not give one.
#[derive(Debug)]
enum OpenError {
    /// HTTP 503 to the upgrade, with its `Retry-After` if any.
    Refused(Option<Duration>),
    /// Closed with 1013 (try again later) before `updateUsers`.
    Again,
    Other(String),
}

/// The held socket of a goose user; clones share it.
#[derive(Clone)]
struct Held(Arc<HeldInner>);

struct HeldInner {
    target: Arc<Target>,
    /// The open socket; `None` once closed at the end.
    parts: Mutex<Option<Socket>>,
}

/// The task holding one open socket, and how to tell it to close.
struct Socket {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

fn jitter_now(n: usize, attempt: u32) -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    plan::jitter(n, attempt, nanos)
}

/// One attempt: TCP from `source`, the upgrade with the session cookie, `updateUsers`.
async fn open(
    url: &str,
    node: SocketAddrV4,
    source: Ipv4Addr,
    cookie: &str,
) -> Result<Stream, OpenError> {
    let other = |what: &str, e: &dyn std::fmt::Display| OpenError::Other(format!("{what}: {e}"));
    let mut req = url
        .into_client_request()
        .map_err(|e| other("websocket request", &e))?;
    let cookie = HeaderValue::from_str(cookie).map_err(|e| other("cookie header", &e))?;
    req.headers_mut().insert("Cookie", cookie);
    let socket = TcpSocket::new_v4().map_err(|e| other("socket", &e))?;
    socket
        .bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))
        .map_err(|e| other(&format!("bind {source}"), &e))?;
    let attempt = async {
        let tcp = socket
            .connect(SocketAddr::V4(node))
            .await
            .map_err(|e| other(&format!("connect {node} from {source}"), &e))?;
        // Frames here are small; the default 128 KiB read buffer per socket would make
        // the generator, not the nodes, the memory limit of a big run.
        let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
        let (mut ws, _) = tokio_tungstenite::client_async_with_config(req, tcp, Some(config))
            .await
            .map_err(|e| match e {
                WsError::Http(response) if response.status().as_u16() == 503 => OpenError::Refused(
                    response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(plan::retry_after),
                ),
                WsError::Http(response) => {
                    OpenError::Other(format!("websocket upgrade: status {}", response.status()))
                }
                e => other("websocket upgrade", &e),
            })?;
        first_frame(&mut ws).await?;
        Ok(ws)
    };
    tokio::time::timeout(CONNECT_WAIT, attempt)
        .await
        .map_err(|_| OpenError::Other("no updateUsers in time".into()))?
}

/// Waits for `updateUsers`, telling frames apart by their `type` alone: a full parse of
/// a 1,000-user `updateUsers` for each of 20,000 sockets made the generator, which shares
/// the cores with the nodes, a third of a connect storm's CPU.
async fn first_frame(ws: &mut Stream) -> Result<(), OpenError> {
    while let Some(msg) = ws.next().await {
        match msg.map_err(|e| OpenError::Other(format!("websocket read: {e}")))? {
            Message::Text(t) => match plan::frame_type(t.as_str()) {
                Some("updateUsers") => return Ok(()),
                Some("presence") => {
                    TOTALS.presence_first.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    return Err(OpenError::Other(format!(
                        "first frame is not updateUsers: {}",
                        t.as_str().chars().take(120).collect::<String>()
                    )))
                }
            },
            Message::Close(Some(frame)) if frame.code == CloseCode::Again => {
                return Err(OpenError::Again)
            }
            Message::Close(frame) => {
                return Err(OpenError::Other(format!(
                    "closed before updateUsers: {:?}",
                    frame.map(|f| u16::from(f.code))
                )))
            }
            _ => continue,
        }
    }
    Err(OpenError::Other("socket closed before updateUsers".into()))
}

/// How a held socket ended.
enum Ended {
    /// We closed it (the run ends).
    ByUs,
    /// The server closed it (with this code, if any) or the connection broke.
    ByServer(Option<u16>),
}

/// What one tab has seen of its messages: the ids received (live or by `sync`), whose
/// highest is its `sync` cursor.
#[derive(Default)]
struct Seen {
    ids: std::collections::BTreeSet<i64>,
}

impl Seen {
    fn cursor(&self) -> i64 {
        self.ids.last().copied().unwrap_or(0)
    }
}

/// The id of a `chatMessage` frame's message, without a full parse.
fn message_id(text: &str) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.get("message")?.get("id")?.as_i64()
}

/// Owns one open socket until told to stop or the server closes it: reads every frame,
/// pings every [`PING_EVERY`], and counts what the server does.
async fn hold(ws: Stream, stop: &mut oneshot::Receiver<()>, seen: &mut Seen) -> Ended {
    TOTALS.held.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = ws.split();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ended = loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    // The type alone, not a JSON parse: in a presence storm the generator
                    // shares the cores with the nodes and must not be what falls behind.
                    TOTALS.text_frames.fetch_add(1, Ordering::Relaxed);
                    match plan::frame_type(t.as_str()) {
                        Some("presence") => {
                            TOTALS.presence_frames.fetch_add(1, Ordering::Relaxed);
                        }
                        Some("chatMessage") => {
                            if let Some(id) = message_id(t.as_str()) {
                                seen.ids.insert(id);
                            }
                        }
                        Some("error") => {
                            TOTALS.error_frames.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
                Some(Ok(Message::Ping(_))) => {
                    TOTALS.server_pings.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(Message::Pong(_))) => {
                    TOTALS.pongs.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map(|f| u16::from(f.code));
                    let key = code.map_or_else(|| "none".into(), |c| c.to_string());
                    *lock(&TOTALS.close_codes).entry(key).or_default() += 1;
                    break Ended::ByServer(code);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    *lock(&TOTALS.close_codes).entry(format!("error: {e}")).or_default() += 1;
                    break Ended::ByServer(None);
                }
                None => break Ended::ByServer(None),
            },
            _ = ping.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break Ended::ByServer(None);
                }
                TOTALS.pings_sent.fetch_add(1, Ordering::Relaxed);
            }
            _ = &mut *stop => {
                let _ = sink.send(Message::Close(None)).await;
                let _ = tokio::time::timeout(CLOSE_WAIT, async {
                    while let Some(Ok(_)) = stream.next().await {}
                })
                .await;
                break Ended::ByUs;
            }
        }
    };
    if !matches!(ended, Ended::ByUs) {
        TOTALS.closed_by_server.fetch_add(1, Ordering::Relaxed);
    }
    TOTALS.held.fetch_sub(1, Ordering::Relaxed);
    ended
}

/// A `sync` walk of a reconnected socket may take this long before it counts as failed.
const SYNC_WAIT: Duration = Duration::from_secs(60);
/// Messages asked for per `sync` page (the protocol's largest).
const SYNC_LIMIT: u32 = 500;

/// After a reconnect, as the browser client does: `sync` from the highest id seen, paging
/// while `hasMore`. Messages that arrive live meanwhile count too (ids are distinct).
async fn resync(ws: &mut Stream, seen: &mut Seen) -> Result<u64, String> {
    tokio::time::timeout(SYNC_WAIT, sync_walk(ws, seen))
        .await
        .map_err(|_| "sync walk took too long".to_owned())?
}

async fn sync_walk(ws: &mut Stream, seen: &mut Seen) -> Result<u64, String> {
    {
        let mut fresh = 0u64;
        let mut after = seen.cursor();
        loop {
            let frame = format!(r#"{{"type":"sync","after":{after},"limit":{SYNC_LIMIT}}}"#);
            ws.send(Message::text(frame))
                .await
                .map_err(|e| format!("send sync: {e}"))?;
            let more = loop {
                let msg = ws
                    .next()
                    .await
                    .ok_or("closed during sync")?
                    .map_err(|e| format!("read during sync: {e}"))?;
                let Message::Text(t) = msg else {
                    if let Message::Close(f) = msg {
                        return Err(format!(
                            "closed during sync: {:?}",
                            f.map(|f| u16::from(f.code))
                        ));
                    }
                    continue;
                };
                let t = t.as_str();
                if t.contains(r#""type":"chatMessage""#) {
                    if let Some(id) = message_id(t) {
                        if seen.ids.insert(id) {
                            fresh += 1;
                        }
                    }
                    continue;
                }
                if t.contains(r#""type":"error""#) {
                    return Err(format!(
                        "error frame during sync: {}",
                        t.chars().take(160).collect::<String>()
                    ));
                }
                if !t.contains(r#""type":"sync""#) {
                    continue;
                }
                let v: serde_json::Value =
                    serde_json::from_str(t).map_err(|e| format!("sync answer: {e}"))?;
                for m in v["messages"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    if let Some(id) = m["id"].as_i64() {
                        if seen.ids.insert(id) {
                            fresh += 1;
                        }
                        after = after.max(id);
                    }
                }
                break v["hasMore"].as_bool().unwrap_or(false);
            };
            if !more {
                return Ok(fresh);
            }
        }
    }
}

/// One browser tab: holds the socket and, when the server closes it, opens it again after
/// a jittered backoff (0.5-1.5 s, doubling to 8 s; a refusal's `Retry-After` is a floor;
/// after a 1012, 0-1 s and another node), then `sync`s, as the browser client does. Ends
/// when told to stop, or after [`MAX_ATTEMPTS`] failed reconnects in a row.
async fn tab(first: Stream, target: Arc<Target>, mut stop: oneshot::Receiver<()>) {
    let mut ws = first;
    let mut seen = Seen::default();
    let mut at = target.first;
    loop {
        let code = match hold(ws, &mut stop, &mut seen).await {
            Ended::ByUs => return,
            Ended::ByServer(code) => code,
        };
        let closed = Instant::now();
        let draining = code == Some(1012);
        if draining {
            at = (at + 1) % target.endpoints.len();
        }
        let mut attempt = 0;
        let mut retry_after = None;
        ws = loop {
            let wait = if draining && attempt == 0 {
                Duration::from_secs_f64(jitter_now(target.n, attempt))
            } else {
                plan::backoff(attempt + 2, retry_after, jitter_now(target.n, attempt))
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = &mut stop => return,
            }
            let started = Instant::now();
            let end = &target.endpoints[at];
            match open(&end.url, end.node, target.source, &target.cookie).await {
                Ok(mut ws) => {
                    TOTALS.reconnects.fetch_add(1, Ordering::Relaxed);
                    lock(&TOTALS.reconnect_us).push(started.elapsed().as_micros() as u64);
                    match resync(&mut ws, &mut seen).await {
                        Ok(fresh) => {
                            TOTALS.synced_messages.fetch_add(fresh, Ordering::Relaxed);
                            lock(&TOTALS.resync_us).push(closed.elapsed().as_micros() as u64);
                            if let Some(k) = target.sync_expect {
                                let n = seen.ids.len() as u64;
                                let which = match n.cmp(&k) {
                                    std::cmp::Ordering::Equal => &TOTALS.sync_exact,
                                    std::cmp::Ordering::Less => &TOTALS.sync_short,
                                    std::cmp::Ordering::Greater => &TOTALS.sync_extra,
                                };
                                which.fetch_add(1, Ordering::Relaxed);
                            }
                            TOTALS
                                .last_resync_ms
                                .fetch_max(crate::window::now_ms(), Ordering::Relaxed);
                            TOTALS.resynced.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            TOTALS.sync_failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    break ws;
                }
                Err(OpenError::Refused(after)) => {
                    TOTALS.retried_503.fetch_add(1, Ordering::Relaxed);
                    retry_after = after;
                }
                Err(OpenError::Again) => {
                    TOTALS.retried_1013.fetch_add(1, Ordering::Relaxed);
                    retry_after = None;
                }
                Err(OpenError::Other(e)) => {
                    TOTALS.reconnect_failures.fetch_add(1, Ordering::Relaxed);
                    // Digits out (ports, addresses, user names), so reasons group.
                    let reason: String = e
                        .chars()
                        .filter(|c| !c.is_ascii_digit())
                        .take(120)
                        .collect();
                    *lock(&TOTALS.reconnect_reasons).entry(reason).or_default() += 1;
                    retry_after = None;
                    at = (at + 1) % target.endpoints.len();
                }
            }
            attempt += 1;
            if attempt >= MAX_ATTEMPTS {
                TOTALS.gave_up.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
    }
}

/// A node a socket may connect to.
struct Endpoint {
    url: String,
    node: SocketAddrV4,
}

/// Where and as whom a user's socket connects; kept to reconnect.
struct Target {
    n: usize,
    name: String,
    /// The nodes a reconnect may go to, and the index of the first socket's node.
    endpoints: Vec<Endpoint>,
    first: usize,
    source: Ipv4Addr,
    cookie: String,
    /// `LOADTEST_SYNC_EXPECT`: messages each reconnected tab should have once synced.
    sync_expect: Option<u64>,
}

/// `LOADTEST_RECONNECT_HOSTS` (default: `LOADTEST_HOSTS`, else the user's own node), with
/// the user's own node added if missing; the index of the user's node in it.
fn endpoints(own: &str, hosts: &[String]) -> Result<(Vec<Endpoint>, usize), Box<TransactionError>> {
    let mut urls: Vec<String> = match std::env::var("LOADTEST_RECONNECT_HOSTS") {
        Ok(list) if !list.trim().is_empty() => plan::parse_hosts(&list).map_err(fail)?,
        _ => hosts.to_vec(),
    };
    let own = own.trim_end_matches('/');
    let first = match urls.iter().position(|u| u.trim_end_matches('/') == own) {
        Some(i) => i,
        None => {
            urls.insert(0, own.to_owned());
            0
        }
    };
    let endpoints = urls
        .iter()
        .map(|u| {
            let base = u.trim_end_matches('/');
            Ok(Endpoint {
                url: plan::ws_url(base),
                node: plan::node_addr(base).map_err(fail)?,
            })
        })
        .collect::<Result<Vec<_>, Box<TransactionError>>>()?;
    Ok((endpoints, first))
}

/// Prints `all_resynced:` once `target` reconnected sockets have synced
/// (`LOADTEST_RESYNC_TARGET`, for loadtest/storm.sh).
pub fn watch_resync(target: Option<u64>) {
    let Some(target) = target else { return };
    tokio::spawn(async move {
        let mut printed = 0;
        let mut ticks = 0u32;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let n = TOTALS.resynced.load(Ordering::Relaxed);
            if n >= target {
                break;
            }
            // Progress once a second, for a script whose target moved (sockets that never
            // opened): `resynced: sockets n unix_ms <last sync walk's end>`.
            ticks += 1;
            if ticks.is_multiple_of(20) && n != printed {
                printed = n;
                println!(
                    "resynced: sockets {n} unix_ms {}",
                    TOTALS.last_resync_ms.load(Ordering::Relaxed)
                );
            }
        }
        println!(
            "all_resynced: sockets {target} unix_ms {}",
            TOTALS.last_resync_ms.load(Ordering::Relaxed)
        );
    });
}

/// Opens the socket, waiting out refusals (503, 1013) up to [`MAX_ATTEMPTS`], records
/// `WS connect` and starts the task that holds it.
async fn connect(
    user: &mut GooseUser,
    target: &Arc<Target>,
) -> Result<Socket, Box<TransactionError>> {
    let mut attempt = 0;
    let mut last_error = String::from("refused (503 or 1013)");
    loop {
        let started = Instant::now();
        let end = &target.endpoints[target.first];
        let result = open(&end.url, end.node, target.source, &target.cookie).await;
        let took = started.elapsed();
        let retry = match result {
            Ok(ws) => {
                TOTALS.opened.fetch_add(1, Ordering::Relaxed);
                lock(&TOTALS.connect_us).push(took.as_micros() as u64);
                *lock(&TOTALS.last_open) = Some(Instant::now());
                let (tx, rx) = oneshot::channel();
                let task = tokio::spawn(tab(ws, target.clone(), rx));
                user.record_custom_request_duration("WS", "connect", took, true, Some(101), None)
                    .await?;
                return Ok(Socket { stop: tx, task });
            }
            Err(OpenError::Refused(retry_after)) => {
                TOTALS.retried_503.fetch_add(1, Ordering::Relaxed);
                retry_after
            }
            Err(OpenError::Again) => {
                TOTALS.retried_1013.fetch_add(1, Ordering::Relaxed);
                None
            }
            // Anything else (a 5xx while a starved node's Redis pool times out, a reset):
            // tried again like a refusal, as the browser client does, and counted.
            Err(OpenError::Other(e)) => {
                TOTALS.retried_other.fetch_add(1, Ordering::Relaxed);
                last_error = e;
                None
            }
        };
        attempt += 1;
        if attempt >= MAX_ATTEMPTS {
            TOTALS.failed.fetch_add(1, Ordering::Relaxed);
            let e = format!("no socket in {attempt} attempts; the last: {last_error}");
            user.record_custom_request_duration("WS", "connect", took, false, None, Some(&e))
                .await?;
            return Err(fail(format!("{}: {e}", target.name)));
        }
        let jitter = jitter_now(target.n, attempt);
        tokio::time::sleep(plan::backoff(attempt - 1, retry, jitter)).await;
    }
}

/// The user's name and session cookie: a login, after a registration unless the users
/// are seeded.
async fn sign_in(
    user: &mut GooseUser,
    settings: &crate::Settings,
    n: usize,
) -> (String, Result<String, Box<TransactionError>>) {
    match &settings.seeded {
        // LOADTEST_SEEDED_USERS=d: more sockets than seeded users, user n logs in as
        // the (n mod d)-th (several sockets per user, as several tabs).
        Some(prefix) => {
            let users = std::env::var("LOADTEST_SEEDED_USERS")
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|d| *d > 0);
            let name = plan::seeded_name(prefix, users.map_or(n, |d| n % d));
            let cookie = login::log_in(user, &name, plan::SEEDED_PASSWORD, n).await;
            (name, cookie)
        }
        None => {
            let name = plan::username(&settings.run, Kind::Connections, n);
            let cookie = match login::register(user, &name, plan::PASSWORD, n).await {
                Ok(_) => login::log_in(user, &name, plan::PASSWORD, n).await,
                Err(e) => Err(e),
            };
            (name, cookie)
        }
    }
}

/// Logs in (registering first unless the users are seeded) and opens the socket.
pub async fn start(user: &mut GooseUser) -> TransactionResult {
    let settings = SETTINGS.get().ok_or_else(|| fail("settings not set"))?;
    let k = NEXT_USER[Kind::Connections.index()].fetch_add(1, Ordering::Relaxed);
    let n = plan::user_number(settings.offset, k);
    if let Some(host) = plan::pick_host(&settings.hosts, n) {
        user.set_base_url(host)?;
    }
    let base = user.base_url.as_str().trim_end_matches('/').to_owned();
    TOTALS.first_start.get_or_init(Instant::now);
    let (name, cookie) = sign_in(user, settings, n).await;
    if let Some(gate) = Gate::installed() {
        gate.pass(k).await;
    }
    let cookie = match cookie {
        Ok(cookie) => cookie,
        Err(e) => {
            TOTALS.login_failed.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
    };
    let (endpoints, first) = endpoints(&base, &settings.hosts)?;
    let sync_expect = std::env::var("LOADTEST_SYNC_EXPECT")
        .ok()
        .and_then(|v| v.trim().parse().ok());
    let target = Arc::new(Target {
        n,
        name,
        endpoints,
        first,
        source: plan::source_addr(n, settings.sources),
        cookie,
        sync_expect,
    });
    let socket = connect(user, &target).await;
    let socket = socket?;
    user.set_session_data(Held(Arc::new(HeldInner {
        target,
        parts: Mutex::new(Some(socket)),
    })));
    Ok(())
}

/// The repeated transaction: the socket's own task reads, pings and reconnects; this
/// only fails once that task gave up.
pub async fn idle(user: &mut GooseUser) -> TransactionResult {
    let Some(held) = user.get_session_data_mut::<Held>() else {
        return Err(fail("no socket: connections start did not finish"));
    };
    let alive = lock(&held.0.parts)
        .as_ref()
        .is_some_and(|s| !s.task.is_finished());
    if alive {
        Ok(())
    } else {
        Err(fail(format!(
            "{}: gave up reconnecting",
            held.0.target.name
        )))
    }
}

pub async fn stop(user: &mut GooseUser) -> TransactionResult {
    let socket = user
        .get_session_data_mut::<Held>()
        .and_then(|held| lock(&held.0.parts).take());
    if let Some(Socket { stop, task }) = socket {
        let _ = stop.send(());
        let _ = tokio::time::timeout(CLOSE_WAIT * 2, task).await;
    }
    Ok(())
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// `connect:`, `opened:` and `sockets:` lines, `key value` pairs for scripts.
pub fn report() -> Vec<String> {
    let mut v = lock(&TOTALS.connect_us).clone();
    v.sort_unstable();
    let ms = |p: f64| {
        plan::percentile(&v, p)
            .map_or_else(|| "-".into(), |us| format!("{:.2}", us as f64 / 1000.0))
    };
    let mut r = lock(&TOTALS.reconnect_us).clone();
    r.sort_unstable();
    let reconnect_p50 = plan::percentile(&r, 50.0)
        .map_or_else(|| "-".into(), |us| format!("{:.2}", us as f64 / 1000.0));
    let span = match (TOTALS.first_start.get(), *lock(&TOTALS.last_open)) {
        (Some(first), Some(last)) => format!("{:.2}", last.duration_since(*first).as_secs_f64()),
        _ => "-".into(),
    };
    let mut lines = vec![
        format!(
            "connect: n {} p50_ms {} p95_ms {} p99_ms {} max_ms {}",
            v.len(),
            ms(50.0),
            ms(95.0),
            ms(99.0),
            ms(100.0)
        ),
        format!(
            "opened: sockets {} failed {} login_failed {} retried_503 {} retried_1013 {} \
             retried_other {} login_retried_503 {} login_retried_no_answer_or_5xx {} \
             reconnects {} reconnect_p50_ms {} reconnect_failures {} gave_up {} \
             first_login_to_last_open_s {span}",
            load(&TOTALS.opened),
            load(&TOTALS.failed),
            load(&TOTALS.login_failed),
            load(&TOTALS.retried_503),
            load(&TOTALS.retried_1013),
            load(&TOTALS.retried_other),
            load(&login::TOTALS.retried_503),
            load(&login::TOTALS.retried_transport),
            load(&TOTALS.reconnects),
            reconnect_p50,
            load(&TOTALS.reconnect_failures),
            load(&TOTALS.gave_up),
        ),
        {
            let mut r = lock(&TOTALS.resync_us).clone();
            r.sort_unstable();
            let p = |q: f64| {
                plan::percentile(&r, q)
                    .map_or_else(|| "-".into(), |us| format!("{:.0}", us as f64 / 1000.0))
            };
            format!(
                "resync: sockets {} p50_ms {} p99_ms {} max_ms {} messages {} sync_failed {} \
                 exact {} short {} extra {} last_unix_ms {}",
                load(&TOTALS.resynced),
                p(50.0),
                p(99.0),
                p(100.0),
                load(&TOTALS.synced_messages),
                load(&TOTALS.sync_failed),
                load(&TOTALS.sync_exact),
                load(&TOTALS.sync_short),
                load(&TOTALS.sync_extra),
                load(&TOTALS.last_resync_ms),
            )
        },
        format!(
            "sockets: closed_by_server {} text_frames {} presence_frames {} error_frames {} \
             server_pings {} pings_sent {} pongs {} presence_before_update_users {}",
            load(&TOTALS.closed_by_server),
            load(&TOTALS.text_frames),
            load(&TOTALS.presence_frames),
            load(&TOTALS.error_frames),
            load(&TOTALS.server_pings),
            load(&TOTALS.pings_sent),
            load(&TOTALS.pongs),
            load(&TOTALS.presence_first),
        ),
    ];
    let mut codes: Vec<_> = lock(&TOTALS.close_codes)
        .iter()
        .map(|(c, n)| (c.clone(), *n))
        .collect();
    codes.sort();
    for (code, n) in codes {
        lines.push(format!("server close {code}: {n}"));
    }
    let mut reasons: Vec<_> = lock(&TOTALS.reconnect_reasons)
        .iter()
        .map(|(r, n)| (r.clone(), *n))
        .collect();
    reasons.sort();
    for (reason, n) in reasons {
        lines.push(format!("reconnect failure {reason}: {n}"));
    }
    lines
}

/// Writes the connect latencies, one microsecond figure a line, for a script that merges
/// several generator processes (`LOADTEST_CONNECT_LOG`).
pub fn write_samples(path: &str) -> Result<(), String> {
    let mut v = lock(&TOTALS.connect_us).clone();
    v.sort_unstable();
    let text: String = v.iter().map(|us| format!("{us}\n")).collect();
    std::fs::write(path, text).map_err(|e| format!("{path}: {e}"))
}
