//! # loadtest
//!
//! Goose load tests for the chat cluster; each goose user is one chat user. `--help`
//! starts with the list below.
//!
//! Scenarios (`--scenarios <name>[,<name>…]` picks; without it chat, history and http run
//! in the weights 4 : 1 : 1, and connections and login only when named):
//!
//! - `chat`: register, log in, open `/ws`; every transaction sends a `chatMessage` to the
//!   partner (user 2k talks to 2k+1) and records the time to its acknowledgement.
//! - `history`: the same start, a few seeded messages, then pages `chatHistory`.
//! - `http`: `GET /api/me` and `GET /api/users?limit=50`.
//! - `connections`: log in and hold one idle WebSocket per user until the run ends
//!   (source addresses 127.0.0.2…, a ping every 20 s, retries of 503/1013 refusals,
//!   reconnects after a server close); reports connect latency, and with
//!   `LOADTEST_NODE_PIDS` each node's RSS per socket. See [`connections`] and
//!   `loadtest/connections.sh`.
//! - `login`: register and log in once, then log in again and again with a pause;
//!   reports login latency, the rate sustained and 503s with `Retry-After` apart from
//!   other failures. See [`login`] and `loadtest/login.sh`.
//! - `rooms`: users in rooms of `LOADTEST_ROOM_SIZE` members; a few per room send, all
//!   read; reports deliveries per second and the time from a send to the last member's
//!   socket. See [`rooms`] and `loadtest/rooms.sh`.
//!
//! Takes goose's own flags (`--host`, `--users`, `--increase-rate`, `--run-time`,
//! `--scenarios`, `--report-file`, ...). `LOADTEST_HOSTS` spreads users over several
//! nodes (partners on different nodes); `LOADTEST_RUN` fixes the user-name tag;
//! `LOADTEST_CHAT_WAIT_MS=<min>-<max>` sets the chat users' pace (default 250-750), or
//! `LOADTEST_CHAT_INTERVAL_MS=<n>` a fixed schedule of one message every `n` ms per user
//! (a fixed offered rate); `LOADTEST_WINDOW=<start>-<end>` (Unix ms) a measured window
//! summed up on its own `window:` line after the run. Only `http://127.0.0.1` is ever
//! targeted, and a run stops after 60 s unless told otherwise. The variables of the
//! connections and login scenarios are in [`HELP`].
//!
//! - [`plan`]: names, pairing, host and source-address choice, backoff and the local-only
//!   check (pure, tested).
//! - [`ws`]: the per-user socket of chat and history, its reader task and the counters.
//! - [`window`]: the measured window of `loadtest/ab.sh`.
//! - [`connections`], [`login`], [`nodes`]: the connection-scale scenarios and what they
//!   read of local nodes (`/proc`, `/metrics`).

mod connections;
mod gate;
mod login;
mod nodes;
mod plan;
mod rooms;
mod totals;
mod window;
mod ws;

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use chat_common::MessageId;
use goose::client::GooseClientBuilder;
use goose::config::GooseConfiguration;
use goose::prelude::*;

use connections::{idle as connections_idle, start as connections_start, stop as connections_stop};
use login::{again as login_again, start as login_start};
use plan::Kind;
use rooms::{message as rooms_message, start as rooms_start, stop as rooms_stop};
use totals::TOTALS;
use ws::Conn;

const DEFAULT_HOST: &str = "http://127.0.0.1:8080";
const DEFAULT_RUN_TIME_SECS: usize = 60;
/// Between two messages of one `chat` user: about 2 messages/s, a tenth of the limit.
const DEFAULT_CHAT_WAIT_MS: (u64, u64) = (250, 750);
/// Messages each `history` user writes at start, so there are pages to read.
const HISTORY_SEED: usize = 15;
const HISTORY_PAGE: u32 = 10;
/// The request name of the `chat` scenario's acknowledged messages.
const ACK: &str = "chatMessage ack";
/// Source addresses of the `connections` sockets unless `LOADTEST_SOURCES` says.
const DEFAULT_SOURCES: u8 = 8;
/// The `login` users' pause between logins unless `LOADTEST_LOGIN_PAUSE_MS` says.
const DEFAULT_LOGIN_PAUSE_MS: (u64, u64) = (1000, 1000);
/// After the nodes hold every expected socket, how long before their RSS is read again.
const DEFAULT_RSS_SETTLE_MS: u64 = 3000;

/// Printed before goose's own `--help`.
pub const HELP: &str = "\
loadtest: goose scenarios for the chat cluster (only http://127.0.0.1 is targeted).

Scenarios, picked with --scenarios <name>[,<name>...]; without it chat, history and http
run (weights 4:1:1); connections and login run only when named:
  chat         register, log in, open /ws, send chatMessage to a partner, time the ack
  history      the same start, then page chatHistory with the partner
  http         GET /api/me and GET /api/users?limit=50
  connections  log in and hold one idle WebSocket per user until the run ends (ping
               every 20 s, upgrades refused with 503 or closed with 1013 retried, a
               socket the server closes opened again)
  login        register + log in once, then log in again after each pause; 503 with
               Retry-After counted apart from other failures
  rooms        users in rooms of LOADTEST_ROOM_SIZE (user n in room n / size, created by
               its first user); the first LOADTEST_ROOM_SENDERS of each room send every
               LOADTEST_ROOM_INTERVAL_MS; reports deliveries/s and send -> last member

Environment:
  LOADTEST_HOSTS=http://127.0.0.1:A,http://127.0.0.1:B   user n goes to node n % count
  LOADTEST_RUN=<tag>                  user-name tag (default: the start time)
  LOADTEST_CHAT_WAIT_MS=<min>-<max>   chat pace (default 250-750)
  LOADTEST_CHAT_INTERVAL_MS=<n>       chat: one message every n ms per user instead
  LOADTEST_WINDOW=<start>-<end>       Unix ms; a `window:` line for loadtest/ab.sh
  LOADTEST_SEEDED=<prefix>            connections/login: user n is <prefix><n+1> with
                                      password password123 (loadtest/seed.sh), no register
  LOADTEST_USER_OFFSET=<k>            this process's users are k, k+1, ... (a second
                                      generator process takes the users after the first's)
  LOADTEST_SOURCES=<n>                connections: source addresses 127.0.0.2.. (default 8)
  LOADTEST_NODE_PIDS=<pid>,<pid>      connections: node pids in LOADTEST_HOSTS order; prints
                                      an `rss:` line per node (VmRSS growth per socket)
  LOADTEST_NODE_METRICS=<url>,<url>   connections: each node's /metrics listener, same order
                                      (default: LOADTEST_HOSTS)
  LOADTEST_EXPECT_SOCKETS=<n>         all open = the nodes' chat_ws_connections add up to n
                                      (default --users; set it when two processes run)
  LOADTEST_RSS_SETTLE_MS=<ms>         pause before the second RSS reading (default 3000)
  LOADTEST_CONNECT_LOG=<file>         connections: write connect latencies (us), one a line
  LOADTEST_LOGIN_PAUSE_MS=<ms>|<min>-<max>   login: pause between logins (default 1000)
  LOADTEST_ROOM_SIZE=<n>              rooms: members per room, 2 to 1000 (default 10)
  LOADTEST_ROOM_SENDERS=<n>           rooms: members of each room who send (default 1)
  LOADTEST_ROOM_INTERVAL_MS=<ms>      rooms: a sender's pause between messages (default 1000)
  LOADTEST_SEEDED_USERS=<d>           connections: user n logs in as seeded user n mod d
                                      (more sockets than users: several tabs each)
  LOADTEST_RECONNECT_HOSTS=<url>,...  connections: nodes a socket reconnects to (default
                                      LOADTEST_HOSTS); after a 1012 it moves to the next
  LOADTEST_RESYNC_TARGET=<n>          connections: print `all_resynced:` once n sockets
                                      reconnected and finished their sync walk
  LOADTEST_SYNC_EXPECT=<k>            connections: count reconnected sockets that had
                                      received exactly / fewer / more than k messages
  LOADTEST_LOGINS_FIRST=1             connections: every user logs in, then the sockets open
                                      (prints `dial_start:`), LOADTEST_DIAL_RATE a second
                                      (default 0: all at once)
  LOADTEST_GATE_DIR=<dir>             with LOGINS_FIRST: the sockets of LOADTEST_GATE_PROCS
                                      generator processes open once all of them logged in

Drivers: loadtest/bench.sh, ab.sh, history-bench.sh, connections.sh, storm.sh, login.sh,
seed.sh, rooms.sh.

";

struct Settings {
    run: String,
    /// Per-user nodes from `LOADTEST_HOSTS`; empty means goose's `--host` for everyone.
    hosts: Vec<String>,
    pace: Pace,
    /// `LOADTEST_USER_OFFSET`: the first user number of this process.
    offset: usize,
    /// `LOADTEST_SOURCES`: loopback source addresses of the `connections` sockets.
    sources: u8,
    /// `LOADTEST_SEEDED`: the name prefix of users that `seed.sh` wrote.
    seeded: Option<String>,
}

/// How a `chat` user spaces its messages.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// A random wait of `min..=max` ms after each acknowledgement (closed loop).
    Wait(u64, u64),
    /// One message every so many ms on a fixed schedule (a fixed offered rate).
    Interval(u64),
}

/// The origin of the fixed schedules' offsets.
static ORIGIN: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

static SETTINGS: OnceLock<Settings> = OnceLock::new();
static NEXT_USER: [AtomicUsize; plan::KINDS] = [
    AtomicUsize::new(0),
    AtomicUsize::new(0),
    AtomicUsize::new(0),
    AtomicUsize::new(0),
    AtomicUsize::new(0),
    AtomicUsize::new(0),
];

/// Per goose user: who they are, who they talk to, and their socket.
#[derive(Clone)]
struct Session {
    number: usize,
    /// The current slot of a fixed schedule, from [`ORIGIN`].
    slot: Option<Duration>,
    me: String,
    partner: String,
    conn: Option<Arc<Conn>>,
    seq: u64,
    before: Option<MessageId>,
}

fn fail(message: impl Into<String>) -> Box<TransactionError> {
    Box::new(TransactionError::Custom(message.into()))
}

fn session(user: &mut GooseUser) -> Result<&mut Session, Box<TransactionError>> {
    user.get_session_data_mut::<Session>()
        .ok_or_else(|| fail("no session: on_start did not finish"))
}

fn conn(user: &mut GooseUser) -> Result<Arc<Conn>, Box<TransactionError>> {
    session(user)?
        .conn
        .clone()
        .ok_or_else(|| fail("no WebSocket for this user"))
}

/// Registers (tolerating 409) and logs in; returns the `Cookie` header of the session.
/// The partner is registered too, so messages to a partner not yet started are not
/// `unknown_user`.
async fn log_in(user: &mut GooseUser, kind: Kind) -> Result<String, Box<TransactionError>> {
    let settings = SETTINGS.get().ok_or_else(|| fail("settings not set"))?;
    let n = NEXT_USER[kind.index()].fetch_add(1, Ordering::Relaxed);
    if let Some(host) = plan::pick_host(&settings.hosts, n) {
        user.set_base_url(host)?;
    }
    plan::check_local(user.base_url.as_str()).map_err(fail)?;
    let me = plan::username(&settings.run, kind, n);
    let partner = plan::username(&settings.run, kind, plan::partner(n));
    // A node turns registrations and logins away with 503 while its bcrypt queue is
    // full; a client waits that out (login.rs), it does not give up.
    for name in [&me, &partner] {
        login::register(user, name, plan::PASSWORD, n).await?;
    }
    let cookie = login::log_in(user, &me, plan::PASSWORD, n).await?;
    user.set_session_data(Session {
        number: n,
        slot: None,
        me,
        partner,
        conn: None,
        seq: 0,
        before: None,
    });
    Ok(cookie)
}

/// Opens the socket, recording the time to the opening `updateUsers` as `WS connect`.
async fn connect(user: &mut GooseUser, cookie: &str) -> TransactionResult {
    let url = plan::ws_url(user.base_url.as_str());
    let (me, partner) = {
        let s = session(user)?;
        (s.me.clone(), s.partner.clone())
    };
    let started = Instant::now();
    let opened = Conn::open(&url, cookie, &me, &partner).await;
    let took = started.elapsed();
    match opened {
        Ok(conn) => {
            window::connected();
            user.record_custom_request_duration("WS", "connect", took, true, Some(101), None)
                .await?;
            session(user)?.conn = Some(Arc::new(conn));
            Ok(())
        }
        Err(e) => {
            user.record_custom_request_duration("WS", "connect", took, false, None, Some(&e))
                .await?;
            Err(fail(e))
        }
    }
}

/// Sends one message to the partner and records the time to its acknowledgement.
async fn send_message(user: &mut GooseUser, name: &str) -> TransactionResult {
    let conn = conn(user)?;
    let (partner, client_id, text) = {
        let s = session(user)?;
        s.seq += 1;
        let text = format!("load test message {} from {}", s.seq, s.me);
        (s.partner.clone(), format!("{}-{}", s.me, s.seq), text)
    };
    let started = Instant::now();
    let result = conn.chat(&partner, text, client_id).await;
    let took = started.elapsed();
    match result {
        Ok(()) => {
            if name == ACK {
                totals::lock(&TOTALS.ack_us).push(took.as_micros() as u64);
                window::ack(took.as_micros() as u64);
            }
            user.record_custom_request_duration("WS", name, took, true, None, None)
                .await
        }
        Err(e) => {
            if name == ACK {
                window::ack_failed();
            }
            user.record_custom_request_duration("WS", name, took, false, None, Some(&e))
                .await?;
            Err(fail(e))
        }
    }
}

async fn chat_start(user: &mut GooseUser) -> TransactionResult {
    let cookie = log_in(user, Kind::Chat).await?;
    connect(user, &cookie).await
}

async fn chat_message(user: &mut GooseUser) -> TransactionResult {
    let pace = SETTINGS.get().map(|s| s.pace);
    if let Some(Pace::Interval(ms)) = pace {
        match session(user) {
            Ok(s) => wait_for_slot(s, Duration::from_millis(ms)).await,
            // A user whose start failed has no schedule: fail at its pace, never in a
            // tight loop (each failure is a goose record; spinning filled the memory).
            Err(e) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                return Err(e);
            }
        }
    }
    send_message(user, ACK).await
}

/// Sleeps until this user's next slot on its fixed schedule.
async fn wait_for_slot(s: &mut Session, interval: Duration) {
    let now = ORIGIN.elapsed();
    let slot = match s.slot {
        None => now + plan::phase(s.number, interval),
        Some(previous) => {
            let (slot, missed) = plan::next_slot(previous, interval, now);
            window::missed_slots(missed);
            slot
        }
    };
    s.slot = Some(slot);
    if slot > now {
        tokio::time::sleep(slot - now).await;
    }
}

async fn history_start(user: &mut GooseUser) -> TransactionResult {
    let cookie = log_in(user, Kind::History).await?;
    connect(user, &cookie).await?;
    for _ in 0..HISTORY_SEED {
        send_message(user, "chatMessage ack (history seed)").await?;
    }
    Ok(())
}

/// Pages back through the conversation; starts again from the newest at the end.
async fn history_page(user: &mut GooseUser) -> TransactionResult {
    let conn = conn(user)?;
    let (partner, before) = {
        let s = session(user)?;
        (s.partner.clone(), s.before)
    };
    let started = Instant::now();
    let result = conn.history(&partner, before, HISTORY_PAGE).await;
    let took = started.elapsed();
    match result {
        Ok((oldest, has_more)) => {
            session(user)?.before = if has_more { oldest } else { None };
            totals::lock(&TOTALS.history_us).push(took.as_micros() as u64);
            user.record_custom_request_duration("WS", "chatHistory", took, true, None, None)
                .await
        }
        Err(e) => {
            user.record_custom_request_duration("WS", "chatHistory", took, false, None, Some(&e))
                .await?;
            Err(fail(e))
        }
    }
}

async fn ws_stop(user: &mut GooseUser) -> TransactionResult {
    if let Some(conn) = user
        .get_session_data_mut::<Session>()
        .and_then(|s| s.conn.take())
    {
        conn.close().await;
    }
    Ok(())
}

async fn http_start(user: &mut GooseUser) -> TransactionResult {
    log_in(user, Kind::Http).await.map(|_| ())
}

async fn http_me(user: &mut GooseUser) -> TransactionResult {
    user.get("/api/me").await?;
    Ok(())
}

async fn http_users(user: &mut GooseUser) -> TransactionResult {
    user.get("/api/users?limit=50").await?;
    Ok(())
}

fn scenarios(
    pace: Pace,
    extra: [bool; plan::KINDS],
    login_pause: (u64, u64),
) -> Result<Vec<Scenario>, GooseError> {
    // Waits keep every socket below the server's 20 frames/s (burst 40). A fixed schedule
    // waits inside the transaction instead (`wait_for_slot`).
    let chat = scenario!("chat").set_weight(4)?;
    let chat = match pace {
        Pace::Wait(min, max) => {
            chat.set_wait_time(Duration::from_millis(min), Duration::from_millis(max))?
        }
        Pace::Interval(_) => chat,
    };
    let chat = chat
        .register_transaction(
            transaction!(chat_start)
                .set_on_start()
                .set_name("chat start"),
        )
        .register_transaction(transaction!(chat_message).set_name("chatMessage"))
        .register_transaction(transaction!(ws_stop).set_on_stop().set_name("close"));
    let history = scenario!("history")
        .set_weight(1)?
        .set_wait_time(Duration::from_millis(500), Duration::from_millis(1000))?
        .register_transaction(
            transaction!(history_start)
                .set_on_start()
                .set_name("history start"),
        )
        .register_transaction(transaction!(history_page).set_name("chatHistory"))
        .register_transaction(transaction!(ws_stop).set_on_stop().set_name("close"));
    let http = scenario!("http")
        .set_weight(1)?
        .set_wait_time(Duration::from_millis(500), Duration::from_millis(1000))?
        .register_transaction(
            transaction!(http_start)
                .set_on_start()
                .set_name("http start"),
        )
        .register_transaction(transaction!(http_me).set_name("me"))
        .register_transaction(transaction!(http_users).set_name("users"));
    let mut all = vec![chat, history, http];
    if extra[Kind::Connections.index()] {
        // The repeated transaction only notices a socket that gave up; the socket's own
        // task reads, pings and reconnects. A long wait keeps goose's bookkeeping small.
        all.push(
            scenario!("connections")
                .set_wait_time(Duration::from_secs(20), Duration::from_secs(30))?
                .register_transaction(
                    transaction!(connections_start)
                        .set_on_start()
                        .set_name("connections start"),
                )
                .register_transaction(transaction!(connections_idle).set_name("hold"))
                .register_transaction(
                    transaction!(connections_stop)
                        .set_on_stop()
                        .set_name("close"),
                ),
        );
    }
    if extra[Kind::Login.index()] {
        all.push(
            scenario!("login")
                .set_wait_time(
                    Duration::from_millis(login_pause.0),
                    Duration::from_millis(login_pause.1),
                )?
                .register_transaction(
                    transaction!(login_start)
                        .set_on_start()
                        .set_name("login start"),
                )
                .register_transaction(transaction!(login_again).set_name("login")),
        );
    }
    if extra[Kind::Rooms.index()] {
        // The transaction sleeps the sender's interval itself.
        all.push(
            scenario!("rooms")
                .register_transaction(
                    transaction!(rooms_start)
                        .set_on_start()
                        .set_name("rooms start"),
                )
                .register_transaction(transaction!(rooms_message).set_name("room message"))
                .register_transaction(transaction!(rooms_stop).set_on_stop().set_name("close")),
        );
    }
    Ok(all)
}

/// `n, p50 p95 p99 max` of microsecond samples, in milliseconds.
fn summary(samples: &std::sync::Mutex<Vec<u64>>) -> String {
    let mut v = std::mem::take(&mut *totals::lock(samples));
    v.sort_unstable();
    let ms = |p: f64| {
        plan::percentile(&v, p)
            .map(|us| format!("{:.2}", us as f64 / 1000.0))
            .unwrap_or_else(|| "-".into())
    };
    format!(
        "n {} p50 {} p95 {} p99 {} max {} (ms)",
        v.len(),
        ms(50.0),
        ms(95.0),
        ms(99.0),
        ms(100.0)
    )
}

fn print_extras(ran: [bool; plan::KINDS]) {
    if ran[Kind::Connections.index()] {
        println!("\n=== connections ===");
        for line in connections::report() {
            println!("{line}");
        }
        for line in nodes::report() {
            println!("{line}");
        }
    }
    if ran[Kind::Login.index()] {
        println!("\n=== login ===");
        for line in login::report() {
            println!("{line}");
        }
    }
    if ran[Kind::Rooms.index()] {
        println!("\n=== rooms ===");
        for line in rooms::report() {
            println!("{line}");
        }
    }
    if ran[..3].iter().any(|r| *r) {
        print_chat_extras();
    }
}

fn print_chat_extras() {
    let partner = TOTALS.from_partner.load(Ordering::Relaxed);
    let run = SETTINGS.get().map_or("?", |s| s.run.as_str());
    println!("\n=== chat extras (run {run}; whole run, ramp-up included) ===");
    println!("chatMessage ack latency: {}", summary(&TOTALS.ack_us));
    println!("chatHistory latency: {}", summary(&TOTALS.history_us));
    println!("messages received from partner: {partner}");
    println!(
        "partner delivery latency (server sentAt -> received): {}",
        summary(&TOTALS.delivery_us)
    );
    println!(
        "other chatMessage frames: {}",
        TOTALS.other_messages.load(Ordering::Relaxed)
    );
    println!(
        "sockets closed by the server: {}",
        TOTALS.closed_early.load(Ordering::Relaxed)
    );
    if let Some(line) = window::report() {
        println!("{line}");
    }
    let errors = TOTALS
        .error_frames
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if errors.is_empty() {
        println!("error frames: none");
    } else {
        let mut errors: Vec<_> = errors.into_iter().collect();
        errors.sort();
        for (code, n) in errors {
            println!("error frames {code}: {n}");
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_number(name: &str) -> Result<Option<u64>, String> {
    env(name)
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| format!("{name} is a whole number: {v:?}"))
        })
        .transpose()
}

async fn run() -> Result<(), String> {
    if std::env::args().skip(1).any(|a| a == "-h" || a == "--help") {
        print!("{HELP}");
    }
    let config = GooseConfiguration::parse_args_default_or_exit();
    let hosts = match std::env::var("LOADTEST_HOSTS") {
        Ok(list) => plan::parse_hosts(&list)?,
        Err(_) => Vec::new(),
    };
    if let Some(host) = &config.host {
        plan::check_local(host)?;
    }
    let default_host = hosts
        .first()
        .map_or(DEFAULT_HOST, String::as_str)
        .to_owned();
    let run = plan::run_tag(std::env::var("LOADTEST_RUN").ok())?;
    let bounded = config.run_time.is_some() || config.iterations.is_some();
    let wait = std::env::var("LOADTEST_CHAT_WAIT_MS").ok();
    let interval = std::env::var("LOADTEST_CHAT_INTERVAL_MS").ok();
    let pace = match (wait, interval) {
        (Some(_), Some(_)) => {
            return Err("set LOADTEST_CHAT_WAIT_MS or LOADTEST_CHAT_INTERVAL_MS, not both".into())
        }
        (Some(range), None) => {
            let (min, max) = plan::parse_wait(&range)?;
            Pace::Wait(min, max)
        }
        (None, Some(ms)) => Pace::Interval(plan::parse_interval(&ms)?),
        (None, None) => Pace::Wait(DEFAULT_CHAT_WAIT_MS.0, DEFAULT_CHAT_WAIT_MS.1),
    };
    if let Ok(range) = std::env::var("LOADTEST_WINDOW") {
        window::start(window::parse(&range)?)?;
    }
    let patterns = config.scenarios.as_ref().map(|s| s.active.as_slice());
    let ran = plan::selected(patterns);
    // `--scenarios-list` lists every scenario, not only the default mix.
    let extra = if config.scenarios_list {
        [true; plan::KINDS]
    } else {
        ran
    };
    let offset = env("LOADTEST_USER_OFFSET")
        .map(|v| plan::parse_offset(&v))
        .transpose()?
        .unwrap_or(0);
    let sources = env("LOADTEST_SOURCES")
        .map(|v| plan::parse_sources(&v))
        .transpose()?
        .unwrap_or(DEFAULT_SOURCES);
    let seeded = env("LOADTEST_SEEDED")
        .map(|v| plan::parse_seeded_prefix(&v))
        .transpose()?;
    let login_pause = env("LOADTEST_LOGIN_PAUSE_MS")
        .map(|v| plan::parse_pause(&v))
        .transpose()?
        .unwrap_or(DEFAULT_LOGIN_PAUSE_MS);
    if let Some(pids) = env("LOADTEST_NODE_PIDS") {
        let nodes = if hosts.is_empty() {
            vec![config.host.clone().unwrap_or_else(|| default_host.clone())]
        } else {
            hosts.clone()
        };
        let pids = plan::parse_pids(&pids, nodes.len())?;
        // Nodes serve /metrics on an internal listener of their own (CHAT_METRICS_LISTEN).
        let metrics = match env("LOADTEST_NODE_METRICS") {
            Some(list) => plan::parse_hosts(&list)?,
            None => nodes.clone(),
        };
        if metrics.len() != nodes.len() {
            return Err(format!(
                "LOADTEST_NODE_METRICS names {} listeners for {} nodes",
                metrics.len(),
                nodes.len()
            ));
        }
        let expect = match env_number("LOADTEST_EXPECT_SOCKETS")? {
            Some(n) => n as usize,
            None => config.users.ok_or(
                "LOADTEST_NODE_PIDS needs --users or LOADTEST_EXPECT_SOCKETS (all sockets of \
                 every generator process)",
            )?,
        };
        let settle = env_number("LOADTEST_RSS_SETTLE_MS")?.unwrap_or(DEFAULT_RSS_SETTLE_MS);
        nodes::start(
            &nodes,
            &metrics,
            &pids,
            expect,
            Duration::from_millis(settle),
            connections::all_open,
        )?;
    }
    // This process's own sockets, when it runs connections alone: one per user.
    let only_connections = ran == [false, false, false, true, false, false];
    let own_sockets = only_connections.then_some(config.users).flatten();
    let connect_log = env("LOADTEST_CONNECT_LOG");
    std::sync::LazyLock::force(&ORIGIN);
    SETTINGS
        .set(Settings {
            run,
            hosts,
            pace,
            offset,
            sources,
            seeded,
        })
        .map_err(|_| "settings set twice".to_owned())?;
    if env("LOADTEST_LOGINS_FIRST").is_some_and(|v| v == "1") {
        let users =
            own_sockets.ok_or("LOADTEST_LOGINS_FIRST needs connections alone and --users")?;
        let dial_rate = env_number("LOADTEST_DIAL_RATE")?.unwrap_or(0);
        let peers = match env("LOADTEST_GATE_DIR") {
            Some(dir) => Some(gate::Peers {
                dir: dir.into(),
                processes: env_number("LOADTEST_GATE_PROCS")?.unwrap_or(1) as usize,
                me: format!("{offset}.in"),
            }),
            None => None,
        };
        let dial_rate = u32::try_from(dial_rate).map_err(|_| "LOADTEST_DIAL_RATE is too big")?;
        gate::Gate::install(gate::Gate::new(users, dial_rate, peers))?;
    }
    if ran[Kind::Connections.index()] {
        connections::watch(own_sockets);
        connections::watch_resync(env_number("LOADTEST_RESYNC_TARGET")?);
    }
    rooms::set_plan(rooms::RoomPlan::from_env()?);
    let mut attack = GooseAttack::initialize_with_config(config).map_err(|e| e.to_string())?;
    // connections and login keep the session cookie themselves: one client shared by every
    // user, instead of a client (and a connection pool) per user, keeps a 10,000-user
    // generator small. The other scenarios rely on a cookie jar per user.
    if !ran[..3].iter().any(|r| *r) {
        attack = attack
            .set_client_builder_without_cookies(GooseClientBuilder::new().without_cookies())
            .map_err(|e| e.to_string())?;
    }
    for scenario in scenarios(pace, extra, login_pause).map_err(|e| e.to_string())? {
        attack = attack.register_scenario(scenario);
    }
    attack = *attack
        .set_default(GooseDefault::Host, default_host.as_str())
        .map_err(|e| e.to_string())?;
    if !bounded {
        attack = *attack
            .set_default(GooseDefault::RunTime, DEFAULT_RUN_TIME_SECS)
            .map_err(|e| e.to_string())?;
    }
    attack.execute().await.map_err(|e| e.to_string())?;
    if let Some(path) = connect_log {
        connections::write_samples(&path)?;
    }
    print_extras(ran);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadtest: {e}");
            ExitCode::FAILURE
        }
    }
}
