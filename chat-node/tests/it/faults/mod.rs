//! The fault suite: a fleet of clients chatting across real nodes while a test breaks
//! something (a node, Redis, MySQL), and one accounting of what became of every message.
//!
//! Each client behaves like the browser client of docs/protocol.md: it sends with a
//! `clientId`, treats its own message coming back as the acknowledgement, reconnects when
//! its socket goes (to its home node first, then the others), logs in again when its
//! session is gone (401), `sync`s from the highest id it has seen, and resends what was
//! not acknowledged with the same `clientId`.
//!
//! Counts, per run (a "message" is one `clientId` of one sender):
//! - `sent`: messages sent (resends of the same `clientId` are counted once; `resent`
//!   counts the extra frames);
//! - `acked`: messages whose sender received its acknowledgement;
//! - `live`: acknowledged messages the recipient received on a live socket;
//! - `recovered`: acknowledged messages the recipient received only through `sync`;
//! - `lost`: acknowledged messages the recipient never received, or that are not stored
//!   under the acknowledged id;
//! - `duplicated`: messages stored more than once, acknowledged under two ids, or
//!   received by the recipient under two ids;
//! - `peak_rss_kib`: the largest peak resident set (VmHWM) of any node of the run.
//!
//! Every test prints one `FAULT-COUNTS name=… sent=… …` line (`--nocapture` shows it);
//! `deploy/local/reliability.sh` turns those lines into the table of docs/reliability.md.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite;

use crate::harness::{Cluster, User, WsReader, WsSender, PASSWORD};

mod drain_storm;
mod mysql_restart;
mod node_kill;
mod redis_restart;
mod slow_consumer;

/// Environment every fault cluster runs with: the rate limit is not under test here.
pub const FAULT_ENV: &[(&str, &str)] = &[("CHAT_WS_RATE", "1000"), ("CHAT_WS_BURST", "1000")];

/// What the clients are asked to do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    /// Send a new message every tick.
    Send,
    /// Send nothing new and retry nothing; keep reading (and reconnecting).
    Pause,
    /// Send nothing new; resend what is not acknowledged until it is.
    Settle,
    /// Close the socket and stop.
    Done,
}

/// The first answer a message got.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Answer {
    Ack,
    Unavailable,
}

/// One client: the node it connects to first, and whom it sends to, in turn (none: it
/// only receives).
pub struct Spec {
    pub home: usize,
    pub peers: Vec<usize>,
}

/// One message as its sender sent it.
pub struct Sent {
    pub to: usize,
    to_name: String,
    text: String,
    pub at: Instant,
    last: Instant,
}

/// What a recipient received for one (sender, clientId).
#[derive(Default)]
pub struct Got {
    pub ids: BTreeSet<i64>,
    pub live: bool,
    pub synced: bool,
}

#[derive(Default)]
pub struct ClientLog {
    /// clientId → the message.
    pub sent: BTreeMap<String, Sent>,
    pub frames_sent: u64,
    /// clientId → every id it was acknowledged under.
    pub acks: BTreeMap<String, BTreeSet<i64>>,
    pub first_answer: HashMap<String, (Answer, Instant)>,
    pub unavailable: u64,
    /// (sender, clientId) → what arrived.
    pub got: HashMap<(String, String), Got>,
    /// The highest message id seen: the `sync` cursor.
    pub cursor: i64,
    pub connected: bool,
    pub syncing: bool,
    /// The phase the client last acted on: once it is `Settle`, the client sends nothing
    /// new.
    phase: Option<Phase>,
    pub connects: u64,
    pub relogins: u64,
    /// Close code of every socket the client lost (`None`: no close frame, the TCP
    /// connection just ended).
    pub closes: Vec<Option<u16>>,
    closed_at: Option<Instant>,
    /// (socket lost, reconnected and synced) for every reconnect.
    pub backs: Vec<(Instant, Instant)>,
    /// Frames no fault explains: errors other than `unavailable`, messages nobody sent.
    pub unexpected: Vec<Value>,
    /// Why connection attempts failed, counted.
    pub connect_errors: BTreeMap<String, u64>,
}

impl ClientLog {
    pub fn pending(&self) -> Vec<String> {
        self.sent
            .keys()
            .filter(|cid| !self.acks.contains_key(*cid))
            .cloned()
            .collect()
    }

    fn answer(&mut self, cid: &str, answer: Answer) {
        if self.sent.contains_key(cid) && !self.first_answer.contains_key(cid) {
            self.first_answer
                .insert(cid.to_owned(), (answer, Instant::now()));
        }
    }
}

fn lock(log: &Mutex<ClientLog>) -> MutexGuard<'_, ClientLog> {
    log.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Ctx {
    idx: usize,
    me: String,
    user: User,
    /// (client index, username) of everyone this client sends to.
    peers: Vec<(usize, String)>,
    home: usize,
    upstreams: Vec<String>,
    every: Duration,
    log: Arc<Mutex<ClientLog>>,
    phase: watch::Receiver<Phase>,
}

impl Ctx {
    fn phase(&self) -> Phase {
        *self.phase.borrow()
    }
}

fn jitter(max_ms: u64) -> Duration {
    Duration::from_millis(rand::random_range(0..max_ms.max(1)))
}

fn chat_frame(peer: &str, text: &str, cid: &str) -> Value {
    json!({"type": "chatMessage", "peer": peer, "text": text, "clientId": cid})
}

fn sync_frame(after: i64) -> Value {
    json!({"type": "sync", "after": after, "limit": 500})
}

/// Opens a socket on the home node, or the next one that takes it; logs in again on
/// 401, and comes back to the same node when its 503 says when (`Retry-After`), as the
/// browser does. `None` once the phase is `Done`.
async fn connect(ctx: &mut Ctx) -> Option<(WsSender, WsReader)> {
    let n = ctx.upstreams.len();
    let mut attempt = 0usize;
    loop {
        if ctx.phase() == Phase::Done {
            return None;
        }
        let base = ctx.upstreams[(ctx.home + attempt) % n].clone();
        let error =
            match tokio::time::timeout(Duration::from_secs(5), ctx.user.try_ws_at(&base, None))
                .await
            {
                Ok(Ok(ws)) => {
                    let (tx, mut rx) = ws.split();
                    match rx.try_next(Duration::from_secs(15)).await {
                        Some(f) if f["type"] == "updateUsers" => {
                            let mut log = lock(&ctx.log);
                            log.connected = true;
                            log.connects += 1;
                            return Some((tx, rx));
                        }
                        Some(Value::Null) => {
                            format!("closed before updateUsers ({:?})", rx.closed.map(u16::from))
                        }
                        Some(f) => format!("first frame {}", f["type"]),
                        None => "no updateUsers in time".to_owned(),
                    }
                }
                Ok(Err(tungstenite::Error::Http(resp))) if resp.status() == 401 => {
                    // The session is gone (Redis lost it): log in again, as the browser does.
                    let login = ctx
                        .user
                        .http
                        .post(format!("{base}/api/login"))
                        .json(&json!({"username": ctx.me, "password": PASSWORD}))
                        .send()
                        .await;
                    match login {
                        Ok(r) if r.status() == 200 => {
                            lock(&ctx.log).relogins += 1;
                            continue;
                        }
                        Ok(r) => format!("login {}", r.status().as_u16()),
                        Err(_) => "login unreachable".to_owned(),
                    }
                }
                Ok(Err(tungstenite::Error::Http(resp))) => {
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    if let (503, Some(after)) = (resp.status().as_u16(), retry_after) {
                        // Admission: this node takes the socket later, as it says.
                        *lock(&ctx.log)
                            .connect_errors
                            .entry("upgrade 503 retry-after".to_owned())
                            .or_default() += 1;
                        let wait = Duration::from_secs(after);
                        tokio::time::sleep(wait / 2 + jitter(wait.as_millis() as u64)).await;
                        continue;
                    }
                    format!("upgrade {}", resp.status().as_u16())
                }
                Ok(Err(tungstenite::Error::Io(e))) => format!("io {:?}", e.kind()),
                Ok(Err(e)) => format!("ws {e}"),
                Err(_) => "upgrade timed out".to_owned(),
            };
        *lock(&ctx.log).connect_errors.entry(error).or_default() += 1;
        attempt += 1;
        if attempt.is_multiple_of(n) {
            tokio::time::sleep(Duration::from_millis(100) + jitter(100)).await;
        }
    }
}

/// Records one frame; returns the frames to send in reply (the next `sync` page, and
/// the resends once a reconnect's `sync` is complete).
fn handle(ctx: &Ctx, frame: &Value) -> Vec<Value> {
    let mut log = lock(&ctx.log);
    let record = |log: &mut ClientLog, m: &Value, live: bool| {
        let Some(id) = m["id"].as_i64() else {
            log.unexpected.push(m.clone());
            return;
        };
        log.cursor = log.cursor.max(id);
        let from = m["from"].as_str().unwrap_or("").to_owned();
        let cid = m["clientId"].as_str().unwrap_or("").to_owned();
        if from == ctx.me {
            if live {
                log.acks.entry(cid.clone()).or_default().insert(id);
                log.answer(&cid, Answer::Ack);
            }
            return;
        }
        let got = log.got.entry((from, cid)).or_default();
        got.ids.insert(id);
        if live {
            got.live = true;
        } else {
            got.synced = true;
        }
    };
    match frame["type"].as_str() {
        Some("chatMessage") => record(&mut log, &frame["message"], true),
        Some("sync") => {
            let messages = frame["messages"].as_array().cloned().unwrap_or_default();
            for m in &messages {
                record(&mut log, m, false);
            }
            if frame["hasMore"] == true {
                let last = messages.last().and_then(|m| m["id"].as_i64()).unwrap_or(0);
                return vec![sync_frame(last)];
            }
            log.syncing = false;
            if let Some(lost) = log.closed_at {
                log.backs.push((lost, Instant::now()));
            }
            return resend_pending(&mut log, Duration::ZERO);
        }
        Some("error") if frame["code"] == "unavailable" => {
            log.unavailable += 1;
            if let Some(cid) = frame["ref"].as_str() {
                log.answer(cid, Answer::Unavailable);
            }
        }
        Some("updateUsers" | "rooms" | "presence" | "typing" | "doneTyping") => {}
        _ => log.unexpected.push(frame.clone()),
    }
    Vec::new()
}

/// Frames resending every unacknowledged message last sent longer than `older` ago.
fn resend_pending(log: &mut ClientLog, older: Duration) -> Vec<Value> {
    let now = Instant::now();
    let mut frames = Vec::new();
    for cid in log.pending() {
        let Some(sent) = log.sent.get_mut(&cid) else {
            continue;
        };
        if now.duration_since(sent.last) >= older {
            sent.last = now;
            frames.push(chat_frame(&sent.to_name, &sent.text, &cid));
        }
    }
    log.frames_sent += frames.len() as u64;
    frames
}

async fn run_client(mut ctx: Ctx) {
    let mut k = 0usize;
    loop {
        let Some((mut tx, mut rx)) = connect(&mut ctx).await else {
            return;
        };
        let reconnect = {
            let mut log = lock(&ctx.log);
            log.syncing = log.connects > 1;
            log.syncing.then_some(log.cursor)
        };
        if let Some(cursor) = reconnect {
            if !tx.send(sync_frame(cursor)).await {
                lost_socket(&ctx, None);
                continue;
            }
        }
        let mut send_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + jitter(300), ctx.every);
        send_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry_tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            let phase = *ctx.phase.borrow_and_update();
            if phase == Phase::Done {
                tx.close().await;
                return;
            }
            let syncing = {
                let mut log = lock(&ctx.log);
                log.phase = Some(phase);
                log.syncing
            };
            let out: Vec<Value> = tokio::select! {
                _ = send_tick.tick(), if phase == Phase::Send && !ctx.peers.is_empty() => {
                    let (to, to_name) = ctx.peers[k % ctx.peers.len()].clone();
                    k += 1;
                    let cid = format!("c{}-{k}", ctx.idx);
                    let text = format!("m{k} from client {}", ctx.idx);
                    let frame = chat_frame(&to_name, &text, &cid);
                    let now = Instant::now();
                    let mut log = lock(&ctx.log);
                    log.sent.insert(cid, Sent { to, to_name, text, at: now, last: now });
                    log.frames_sent += 1;
                    vec![frame]
                }
                _ = retry_tick.tick(), if phase == Phase::Settle && !syncing => {
                    resend_pending(&mut lock(&ctx.log), Duration::from_secs(2))
                }
                frame = rx.try_next(Duration::from_millis(250)) => match frame {
                    None => Vec::new(),
                    Some(Value::Null) => {
                        lost_socket(&ctx, rx.closed.map(u16::from));
                        break;
                    }
                    Some(f) => handle(&ctx, &f),
                },
                changed = ctx.phase.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    Vec::new()
                }
            };
            let mut gone = false;
            for frame in out {
                if !tx.send(frame).await {
                    gone = true;
                    break;
                }
            }
            if gone {
                // The read side reports the close (and its code) next time round.
                continue;
            }
        }
    }
}

fn lost_socket(ctx: &Ctx, code: Option<u16>) {
    let mut log = lock(&ctx.log);
    log.connected = false;
    log.syncing = false;
    log.closes.push(code);
    log.closed_at = Some(Instant::now());
}

/// Peak resident set (VmHWM) of a process, in KiB.
pub fn peak_rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub struct Fleet {
    pub logs: Vec<Arc<Mutex<ClientLog>>>,
    pub names: Vec<String>,
    pub homes: Vec<usize>,
    tasks: Vec<JoinHandle<()>>,
    phase: watch::Sender<Phase>,
    peak_rss_kib: u64,
    started: Instant,
}

impl Fleet {
    /// Registers and logs in one user per spec (on its home node), opens every socket,
    /// and starts sending, each sender one message every `every`.
    pub async fn start(c: &Cluster, specs: &[Spec], every: Duration) -> Self {
        let started = Instant::now();
        let labels: Vec<String> = (0..specs.len()).map(|i| format!("f{i}")).collect();
        let users: Vec<User> = futures_util::stream::iter(
            specs
                .iter()
                .zip(&labels)
                .map(|(s, label)| c.login_new(s.home, label)),
        )
        .buffered(8)
        .collect()
        .await;
        let names: Vec<String> = users.iter().map(|u| u.username.clone()).collect();
        let upstreams: Vec<String> = (0..c.nodes.len()).map(|i| c.url(i)).collect();
        let (phase_tx, phase_rx) = watch::channel(Phase::Pause);
        let mut fleet = Self {
            logs: Vec::new(),
            names: names.clone(),
            homes: specs.iter().map(|s| s.home).collect(),
            tasks: Vec::new(),
            phase: phase_tx,
            peak_rss_kib: 0,
            started,
        };
        for (i, (user, spec)) in users.into_iter().zip(specs).enumerate() {
            assert!(!spec.peers.contains(&i), "client {i} would send to itself");
            let log = Arc::new(Mutex::new(ClientLog::default()));
            fleet.logs.push(log.clone());
            let ctx = Ctx {
                idx: i,
                me: names[i].clone(),
                user,
                peers: spec.peers.iter().map(|&p| (p, names[p].clone())).collect(),
                home: spec.home,
                upstreams: upstreams.clone(),
                every,
                log,
                phase: phase_rx.clone(),
            };
            fleet.tasks.push(tokio::spawn(run_client(ctx)));
        }
        let all = fleet.clients();
        let up = fleet
            .wait_until(Duration::from_secs(60), |f| {
                f.clients_where(&all, |l| l.connects >= 1) == all.len()
            })
            .await;
        assert!(up, "every client connected within 60 s");
        fleet.set(Phase::Send);
        fleet
    }

    pub fn clients(&self) -> Vec<usize> {
        (0..self.logs.len()).collect()
    }

    /// The clients whose home is `node`.
    pub fn homed_on(&self, node: usize) -> Vec<usize> {
        self.clients()
            .into_iter()
            .filter(|&i| self.homes[i] == node)
            .collect()
    }

    pub fn log(&self, i: usize) -> MutexGuard<'_, ClientLog> {
        lock(&self.logs[i])
    }

    pub fn clients_where(&self, which: &[usize], pred: impl Fn(&ClientLog) -> bool) -> usize {
        which.iter().filter(|&&i| pred(&self.log(i))).count()
    }

    pub fn set(&self, phase: Phase) {
        let _ = self.phase.send(phase);
    }

    pub fn acked(&self) -> usize {
        self.clients().iter().map(|&i| self.log(i).acks.len()).sum()
    }

    /// Polls `pred` until it holds or `bound` passes; true if it held.
    pub async fn wait_until(&self, bound: Duration, pred: impl Fn(&Self) -> bool) -> bool {
        let deadline = Instant::now() + bound;
        loop {
            if pred(self) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every message sent has had an answer (acknowledgement or `unavailable`).
    pub fn all_answered(&self) -> bool {
        self.logs.iter().all(|l| {
            let l = lock(l);
            l.sent.keys().all(|cid| l.first_answer.contains_key(cid))
        })
    }

    /// Every client is connected and synced, every message acknowledged, and every
    /// recipient has every message sent to it.
    pub fn complete(&self) -> bool {
        for i in self.clients() {
            let log = self.log(i);
            if !log.connected
                || log.syncing
                || log.phase != Some(Phase::Settle)
                || log.acks.len() < log.sent.len()
            {
                return false;
            }
            for (cid, sent) in &log.sent {
                let key = (self.names[i].clone(), cid.clone());
                if sent.to == i || !self.log(sent.to).got.contains_key(&key) {
                    return false;
                }
            }
        }
        true
    }

    /// When the last of `which` was back (reconnected and synced) after losing its
    /// socket at or after `since`; `None` while one of them is not.
    pub fn back_at(&self, which: &[usize], since: Instant) -> Option<Instant> {
        let mut last = since;
        for &i in which {
            let log = self.log(i);
            let back = log.backs.iter().find(|(lost, _)| *lost >= since)?;
            last = last.max(back.1);
        }
        Some(last)
    }

    /// How long after `since` the last of `which` was back; `None` while one is not.
    pub fn back_after(&self, which: &[usize], since: Instant) -> Option<Duration> {
        self.back_at(which, since).map(|t| t.duration_since(since))
    }

    /// Each of `which`'s times from `since` to being back (reconnected and synced).
    pub fn back_times(&self, which: &[usize], since: Instant) -> Vec<Duration> {
        let mut times: Vec<Duration> = which
            .iter()
            .filter_map(|&i| {
                let log = self.log(i);
                let back = log.backs.iter().find(|(lost, _)| *lost >= since)?;
                Some(back.1.duration_since(since))
            })
            .collect();
        times.sort();
        times
    }

    /// Records the peak RSS of every running node (call it before a node is killed).
    pub fn note_rss(&mut self, c: &Cluster) {
        for node in &c.nodes {
            if let Some(kib) = peak_rss_kib(node.pid()) {
                self.peak_rss_kib = self.peak_rss_kib.max(kib);
            }
        }
    }

    /// Stops new traffic and resends what is unacknowledged until every message is
    /// acknowledged and received, or `bound` passes; returns how long that took.
    pub async fn settle(&self, bound: Duration) -> Option<Duration> {
        let from = Instant::now();
        self.set(Phase::Settle);
        self.wait_until(bound, Self::complete)
            .await
            .then(|| from.elapsed())
    }

    /// Closes every socket, compares what was sent, acknowledged and received with what
    /// MySQL holds, prints the `FAULT-COUNTS` line and returns the counts.
    pub async fn finish(mut self, c: &Cluster, name: &str, extra: &[(&str, String)]) -> Counts {
        self.note_rss(c);
        self.set(Phase::Done);
        for t in std::mem::take(&mut self.tasks) {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        let stored = stored_messages(c).await;
        let mut n = Counts {
            name: name.to_owned(),
            peak_rss_kib: self.peak_rss_kib,
            ..Counts::default()
        };
        let index: HashMap<&str, usize> = self
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        for i in self.clients() {
            let log = self.log(i);
            n.sent += log.sent.len();
            n.resent += log.frames_sent as usize - log.sent.len();
            n.acked += log.acks.len();
            n.unavailable += log.unavailable as usize;
            n.reconnects += log.connects.saturating_sub(1) as usize;
            n.relogins += log.relogins as usize;
            n.unexpected.extend(log.unexpected.iter().cloned());
            for (cid, sent) in &log.sent {
                let key = (self.names[i].clone(), cid.clone());
                let rows = stored.get(&key).cloned().unwrap_or_default();
                let acks = log.acks.get(cid);
                let peer = self.log(sent.to);
                let got = peer.got.get(&key);
                let duplicated = rows.len() > 1
                    || acks.is_some_and(|a| a.len() > 1)
                    || got.is_some_and(|g| g.ids.len() > 1);
                if duplicated {
                    n.duplicated += 1;
                    n.samples.push(format!(
                        "duplicated {}/{cid}: stored {rows:?}, acked {acks:?}, received {:?}",
                        self.names[i],
                        got.map(|g| &g.ids)
                    ));
                }
                let Some(acks) = acks else {
                    continue;
                };
                let stored_as_acked = acks.iter().all(|id| rows.contains(id));
                match got {
                    Some(g) if stored_as_acked && g.ids.iter().all(|id| acks.contains(id)) => {
                        if g.live {
                            n.live += 1;
                        } else {
                            n.recovered += 1;
                        }
                    }
                    _ => {
                        n.lost += 1;
                        n.samples.push(format!(
                            "lost {}/{cid} (client {i} to client {}): stored {rows:?}, acked {acks:?}, \
                             received {:?}, resent {}, recipient's cursor {}, recipient reconnected {} times",
                            self.names[i],
                            sent.to,
                            got.map(|g| &g.ids),
                            sent.last > sent.at,
                            peer.cursor,
                            peer.connects.saturating_sub(1),
                        ));
                    }
                }
            }
        }
        // Rows of users outside the fleet (a test's own seeded conversation) are not its.
        for ((sender, cid), ids) in &stored {
            let Some(&i) = index.get(sender.as_str()) else {
                continue;
            };
            if !self.log(i).sent.contains_key(cid) {
                n.phantom += 1;
                n.samples
                    .push(format!("stored but never sent: {sender}/{cid} {ids:?}"));
            }
        }
        let mut closes: BTreeMap<String, usize> = BTreeMap::new();
        let mut errors: BTreeMap<String, u64> = BTreeMap::new();
        for i in self.clients() {
            let log = self.log(i);
            for code in &log.closes {
                let code = code.map_or("none".to_owned(), |c| c.to_string());
                *closes.entry(code).or_default() += 1;
            }
            for (e, k) in &log.connect_errors {
                *errors.entry(e.clone()).or_default() += k;
            }
        }
        n.closes = closes
            .iter()
            .map(|(code, k)| format!("{code}x{k}"))
            .collect::<Vec<_>>()
            .join(",");
        if !errors.is_empty() {
            eprintln!("fault {name}: failed connection attempts {errors:?}");
        }
        n.unacked = n.sent - n.acked;
        n.secs = self.started.elapsed().as_secs_f64();
        n.extra = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        n.print();
        n
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    username: String,
    #[diesel(sql_type = Nullable<Text>)]
    client_id: Option<String>,
}

/// (sender, clientId) → ids of the stored messages.
pub async fn stored_messages(c: &Cluster) -> HashMap<(String, String), Vec<i64>> {
    let mut conn = c.db().await;
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT m.id, u.username, m.client_id FROM messages m JOIN users u ON u.id = m.sender_id",
    )
    .load(&mut conn)
    .await
    .expect("stored messages");
    let mut stored: HashMap<(String, String), Vec<i64>> = HashMap::new();
    for r in rows {
        stored
            .entry((r.username, r.client_id.unwrap_or_default()))
            .or_default()
            .push(r.id);
    }
    stored
}

#[derive(Default, Debug)]
pub struct Counts {
    pub name: String,
    pub sent: usize,
    pub acked: usize,
    pub live: usize,
    pub recovered: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub peak_rss_kib: u64,
    pub unacked: usize,
    pub unavailable: usize,
    pub resent: usize,
    pub reconnects: usize,
    pub relogins: usize,
    /// Close codes of the sockets clients lost, `<code>x<count>` (`none`: no close frame).
    pub closes: String,
    /// Stored messages no client sent.
    pub phantom: usize,
    pub secs: f64,
    pub extra: Vec<(String, String)>,
    pub unexpected: Vec<Value>,
    /// The first few lost or duplicated messages, for the failure message.
    pub samples: Vec<String>,
}

impl Counts {
    pub fn print(&self) {
        let mut line = format!(
            "FAULT-COUNTS name={} sent={} acked={} live={} recovered={} lost={} duplicated={} \
             peak_rss_kib={} unacked={} unavailable={} resent={} reconnects={} relogins={} \
             closes={} secs={:.1}",
            self.name,
            self.sent,
            self.acked,
            self.live,
            self.recovered,
            self.lost,
            self.duplicated,
            self.peak_rss_kib,
            self.unacked,
            self.unavailable,
            self.resent,
            self.reconnects,
            self.relogins,
            if self.closes.is_empty() {
                "-"
            } else {
                &self.closes
            },
            self.secs,
        );
        for (k, v) in &self.extra {
            line.push_str(&format!(" {k}={v}"));
        }
        eprintln!("{line}");
    }

    /// What every fault test asserts: traffic flowed, every message was acknowledged in
    /// the end (resent with its clientId where needed), nothing acknowledged was lost,
    /// nothing was stored or delivered twice, nothing was stored that nobody sent, and no
    /// frame came that the fault does not explain.
    pub fn assert_clean(&self) {
        let samples: Vec<&String> = self.samples.iter().take(10).collect();
        assert!(self.sent > 0, "{}: no traffic", self.name);
        assert_eq!(self.lost, 0, "{}: lost {samples:#?}", self.name);
        assert_eq!(self.duplicated, 0, "{}: duplicated {samples:#?}", self.name);
        assert_eq!(self.phantom, 0, "{}: phantom {samples:#?}", self.name);
        assert_eq!(
            self.acked, self.sent,
            "{}: {} messages never acknowledged",
            self.name, self.unacked
        );
        assert_eq!(self.live + self.recovered, self.acked, "{}", self.name);
        let unexpected: Vec<&Value> = self.unexpected.iter().take(10).collect();
        assert!(
            self.unexpected.is_empty(),
            "{}: unexpected frames {unexpected:#?}",
            self.name
        );
    }
}

/// One client per entry of `homes` (its home node), in a ring: client `i` sends to
/// client `i + 1`, so with alternating homes every message crosses nodes.
pub fn ring(homes: &[usize]) -> Vec<Spec> {
    let n = homes.len();
    homes
        .iter()
        .enumerate()
        .map(|(i, &home)| Spec {
            home,
            peers: vec![(i + 1) % n],
        })
        .collect()
}

/// Milliseconds, for the counts line.
pub fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}
