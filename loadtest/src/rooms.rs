//! The `rooms` scenario: users in rooms of `LOADTEST_ROOM_SIZE` members (default 10).
//! User n belongs to room n / size; the room's first user creates it once every member
//! has registered (retrying while some are `unknown_user`). The first
//! `LOADTEST_ROOM_SENDERS` members of each room (default 1) send a room message every
//! `LOADTEST_ROOM_INTERVAL_MS` (default 1000); everyone reads. Every room message
//! received, by any member, is recorded with its arrival time, so the report has, per
//! message, how many members got it and the time from its send to the last member's
//! socket (all in this process, on one clock), and deliveries per second. The report
//! gives those figures twice: over the whole run, and over the messages sent after the
//! last member learned its room (the ramp-up, when sockets are still opening and nodes
//! still subscribing, left out).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_common::protocol::{ClientFrame, ServerFrame};
use futures_util::StreamExt;
use goose::prelude::*;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::plan::{self, Kind};
use crate::totals::lock;
use crate::ws::{dial, send_frame, Sink, Stream, REPLY_WAIT};
use crate::{fail, log_in, session, SETTINGS};

/// How long the room's creator waits for its members to register.
const CREATE_TRIES: u32 = 300;
const CREATE_PAUSE: Duration = Duration::from_secs(1);

/// The scenario's settings, from the environment.
#[derive(Debug, Clone, Copy)]
pub struct RoomPlan {
    pub size: usize,
    pub senders: usize,
    pub interval: Duration,
}

impl RoomPlan {
    pub fn from_env() -> Result<Self, String> {
        let number = |name: &str, default: u64| -> Result<u64, String> {
            match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{name} is a positive whole number: {v:?}")),
                _ => Ok(default),
            }
        };
        Ok(Self {
            size: number("LOADTEST_ROOM_SIZE", 10)?.clamp(2, 1000) as usize,
            senders: number("LOADTEST_ROOM_SENDERS", 1)? as usize,
            interval: Duration::from_millis(number("LOADTEST_ROOM_INTERVAL_MS", 1000)?),
        })
    }
}

/// Run-wide records.
#[derive(Default)]
struct Records {
    /// clientId → when it was sent.
    sent: HashMap<String, Instant>,
    /// Message id → when it was sent (once its echo told us the id).
    acked: HashMap<u64, Instant>,
    /// Message id → members that received it, and the last arrival.
    received: HashMap<u64, (u64, Instant)>,
    errors: HashMap<String, u64>,
}

static RECORDS: std::sync::LazyLock<Mutex<Records>> = std::sync::LazyLock::new(Mutex::default);
static PLAN: std::sync::OnceLock<RoomPlan> = std::sync::OnceLock::new();
static SOCKETS: std::sync::LazyLock<Mutex<HashMap<usize, Arc<RoomSocket>>>> =
    std::sync::LazyLock::new(Mutex::default);
static ROOMS_SEEN: AtomicU64 = AtomicU64::new(0);
/// When the last member so far learned its room.
static LAST_JOIN: Mutex<Option<Instant>> = Mutex::new(None);

pub fn set_plan(plan: RoomPlan) {
    let _ = PLAN.set(plan);
}

struct RoomSocket {
    sink: Sink,
    /// The room's id once a `room` or `rooms` frame named it; 0 before.
    room: Arc<AtomicU64>,
    /// The last error frame's code.
    error: Arc<Mutex<Option<String>>>,
    reader: JoinHandle<()>,
}

impl Drop for RoomSocket {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl RoomSocket {
    async fn send(&self, frame: &ClientFrame) -> Result<(), String> {
        send_frame(&self.sink, frame).await
    }
}

/// Records every frame of one socket as it arrives.
async fn read(
    mut stream: futures_util::stream::SplitStream<Stream>,
    me: String,
    room: Arc<AtomicU64>,
    error: Arc<Mutex<Option<String>>>,
) {
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Text(text) = msg else {
            continue;
        };
        let now = Instant::now();
        match serde_json::from_str::<ServerFrame>(text.as_str()) {
            Ok(ServerFrame::ChatMessage { message }) if message.room.is_some() => {
                let id = message.id.get();
                let mut r = lock(&RECORDS);
                if message.from == me {
                    if let Some(sent) = message.client_id.and_then(|c| r.sent.remove(&c)) {
                        r.acked.insert(id, sent);
                    }
                }
                let entry = r.received.entry(id).or_insert((0, now));
                entry.0 += 1;
                entry.1 = entry.1.max(now);
            }
            Ok(ServerFrame::Room { room: info, .. }) => joined(&room, info.id),
            Ok(ServerFrame::Rooms { rooms }) => {
                if let Some(info) = rooms.first() {
                    joined(&room, info.id);
                }
            }
            Ok(ServerFrame::Error { code, .. }) => {
                let code = code.to_string();
                *lock(&RECORDS).errors.entry(code.clone()).or_default() += 1;
                *lock(&error) = Some(code);
            }
            _ => {}
        }
    }
}

/// The socket's room is known; each member counts once.
fn joined(room: &AtomicU64, id: u64) {
    if room.swap(id, Ordering::Relaxed) == 0 {
        ROOMS_SEEN.fetch_add(1, Ordering::Relaxed);
        *lock(&LAST_JOIN) = Some(Instant::now());
    }
}

async fn open(url: &str, cookie: &str, me: &str) -> Result<RoomSocket, String> {
    // Frames here are small; tungstenite's default 128 KiB read buffer, zeroed on every
    // read that needs more room, cost the generator more CPU than the frames themselves.
    let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
    let (sink, stream) = dial(url, cookie, Some(config), true).await?.split();
    let room = Arc::new(AtomicU64::new(0));
    let error = Arc::new(Mutex::new(None));
    let reader = tokio::spawn(read(stream, me.to_owned(), room.clone(), error.clone()));
    Ok(RoomSocket {
        sink: tokio::sync::Mutex::new(sink),
        room,
        error,
        reader,
    })
}

fn plan_of() -> Result<RoomPlan, Box<TransactionError>> {
    PLAN.get().copied().ok_or_else(|| fail("room plan not set"))
}

/// Logs in, opens the socket; the room's first member creates the room.
pub async fn start(user: &mut GooseUser) -> TransactionResult {
    let plan = plan_of()?;
    let cookie = log_in(user, Kind::Rooms).await?;
    let (number, me) = {
        let s = session(user)?;
        (s.number, s.me.clone())
    };
    let url = plan::ws_url(user.base_url.as_str());
    let started = Instant::now();
    let socket = match open(&url, &cookie, &me).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            user.record_custom_request_duration(
                "WS",
                "connect",
                started.elapsed(),
                false,
                None,
                Some(&e),
            )
            .await?;
            return Err(fail(e));
        }
    };
    user.record_custom_request_duration("WS", "connect", started.elapsed(), true, Some(101), None)
        .await?;
    lock(&SOCKETS).insert(number, socket.clone());
    if number % plan.size == 0 {
        create(user, &socket, number, plan).await?;
    }
    Ok(())
}

/// Creates the room of `first`'s group, waiting for members still registering.
async fn create(
    user: &mut GooseUser,
    socket: &RoomSocket,
    first: usize,
    plan: RoomPlan,
) -> TransactionResult {
    let run = SETTINGS
        .get()
        .map(|s| s.run.clone())
        .ok_or_else(|| fail("settings not set"))?;
    let members: Vec<String> = (first + 1..first + plan.size)
        .map(|n| plan::username(&run, Kind::Rooms, n))
        .collect();
    let started = Instant::now();
    for _ in 0..CREATE_TRIES {
        *lock(&socket.error) = None;
        socket
            .send(&ClientFrame::CreateRoom {
                name: format!("load {first}"),
                members: members.clone(),
                client_id: Some(format!("room-{first}")),
            })
            .await
            .map_err(fail)?;
        let deadline = Instant::now() + REPLY_WAIT;
        loop {
            if socket.room.load(Ordering::Relaxed) != 0 {
                return user
                    .record_custom_request_duration(
                        "WS",
                        "createRoom",
                        started.elapsed(),
                        true,
                        None,
                        None,
                    )
                    .await;
            }
            let error = lock(&socket.error).clone();
            match error.as_deref() {
                Some("unknown_user") => break,
                Some(code) => return Err(fail(format!("createRoom: {code}"))),
                None if Instant::now() > deadline => return Err(fail("createRoom: no answer")),
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        tokio::time::sleep(CREATE_PAUSE).await;
    }
    Err(fail("createRoom: members never all registered"))
}

/// A sender sends one room message (its delivery is measured by the readers); the
/// others only read.
pub async fn message(user: &mut GooseUser) -> TransactionResult {
    let plan = plan_of()?;
    // Before anything that can fail: a user whose start failed has no session, and
    // failing at once would spin (goose records every failure; that filled the memory).
    tokio::time::sleep(plan.interval).await;
    let (number, me, seq) = {
        let s = session(user)?;
        s.seq += 1;
        (s.number, s.me.clone(), s.seq)
    };
    if number % plan.size >= plan.senders {
        return Ok(());
    }
    let socket = lock(&SOCKETS).get(&number).cloned();
    let Some(socket) = socket else {
        return Err(fail("no socket for this user"));
    };
    let room = socket.room.load(Ordering::Relaxed);
    if room == 0 {
        return Ok(());
    }
    let client_id = format!("{me}-{seq}");
    lock(&RECORDS)
        .sent
        .insert(client_id.clone(), Instant::now());
    socket
        .send(&ClientFrame::ChatMessage {
            peer: None,
            room: Some(room),
            text: format!("room load {seq} from {me}"),
            client_id: Some(client_id),
        })
        .await
        .map_err(fail)
}

pub async fn stop(user: &mut GooseUser) -> TransactionResult {
    let number = session(user)?.number;
    lock(&SOCKETS).remove(&number);
    Ok(())
}

/// The report's lines: messages, how many reached every member, deliveries per second,
/// and the time from send to the last member's socket, over the whole run and over the
/// messages sent after the last member learned its room.
pub fn report() -> Vec<String> {
    let plan = PLAN.get().copied();
    let r = lock(&RECORDS);
    let size = plan.map_or(0, |p| p.size as u64);
    let last_join = *lock(&LAST_JOIN);
    let mut lines = vec![format!(
        "room size {size}, rooms seen {}, senders per room {}, interval {:?}",
        ROOMS_SEEN.load(Ordering::Relaxed),
        plan.map_or(0, |p| p.senders),
        plan.map_or(Duration::ZERO, |p| p.interval)
    )];
    lines.extend(window(&r, size, "whole run", |_| true));
    if let Some(joined) = last_join {
        lines.extend(window(&r, size, "after the last join", |sent| {
            sent >= joined
        }));
    }
    if r.errors.is_empty() {
        lines.push("error frames: none".into());
    } else {
        let mut errors: Vec<_> = r.errors.iter().collect();
        errors.sort();
        for (code, n) in errors {
            lines.push(format!("error frames {code}: {n}"));
        }
    }
    lines
}

/// The figures of the acknowledged messages whose send time `counts`.
fn window(r: &Records, size: u64, name: &str, counts: impl Fn(Instant) -> bool) -> Vec<String> {
    let mut latency_us: Vec<u64> = Vec::new();
    let mut complete = 0u64;
    let mut deliveries = 0u64;
    let mut first_sent: Option<Instant> = None;
    let mut last_arrival: Option<Instant> = None;
    for (id, sent) in r.acked.iter().filter(|(_, sent)| counts(**sent)) {
        let Some((count, last)) = r.received.get(id) else {
            continue;
        };
        if *count >= size {
            complete += 1;
        }
        deliveries += count;
        latency_us.push(last.saturating_duration_since(*sent).as_micros() as u64);
        first_sent = Some(first_sent.map_or(*sent, |f| f.min(*sent)));
        last_arrival = Some(last_arrival.map_or(*last, |l| l.max(*last)));
    }
    latency_us.sort_unstable();
    let span = match (first_sent, last_arrival) {
        (Some(f), Some(l)) => l.saturating_duration_since(f).as_secs_f64(),
        _ => 0.0,
    };
    let ms = |p: f64| {
        plan::percentile(&latency_us, p)
            .map(|us| format!("{:.2}", us as f64 / 1000.0))
            .unwrap_or_else(|| "-".into())
    };
    vec![
        format!(
            "{name}: room messages {}, reached all {size} members {complete}",
            latency_us.len()
        ),
        format!(
            "{name}: deliveries {deliveries} in {span:.1} s: {:.0} deliveries/s",
            if span > 0.0 {
                deliveries as f64 / span
            } else {
                0.0
            }
        ),
        format!(
            "{name}: send -> last member: n {} p50 {} p95 {} p99 {} max {} (ms)",
            latency_us.len(),
            ms(50.0),
            ms(95.0),
            ms(99.0),
            ms(100.0)
        ),
    ]
}
