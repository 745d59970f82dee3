//! Settings: every flag is also an environment variable, and every one has a default that
//! works on a laptop. The README lists them.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;

use crate::storage::rooms::RoomLimits;
use crate::storage::writer::WriterConfig;

/// A development session key, used only with `--dev`: good enough for a laptop,
/// announced with a warning.
pub const DEV_SESSION_KEY: &str =
    "chat-dev-session-key-do-not-use-in-production-0123456789abcdef0123456789abcdef";

#[derive(Debug, Parser)]
#[command(name = "chat-node", version, about = "A stateless chat node")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve HTTP and WebSockets (the default).
    Serve,
    /// Create the database if missing, run pending migrations, and exit.
    Migrate,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address and port for HTTP and WebSockets.
    #[arg(long, env = "CHAT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// MySQL (or MariaDB) holding accounts and history; the database is created if missing.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "mysql://root@127.0.0.1:3306/chat"
    )]
    pub database_url: String,
    /// Redis for sessions, pub/sub fan-out and presence, shared by every node.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Every Redis key and channel of the node, sessions included, starts with it.
    #[arg(long, env = "CHAT_REDIS_PREFIX", default_value = "chat")]
    pub redis_prefix: String,
    /// Unique per process in a cluster; defaults to hostname and pid.
    #[arg(long, env = "CHAT_NODE_ID")]
    pub node_id: Option<String>,
    /// Signs session cookies: at least 32 bytes, the same on every node; required unless
    /// --dev.
    #[arg(long, env = "CHAT_SESSION_KEY", hide_env_values = true)]
    pub session_key: Option<String>,
    /// Comma-separated origins allowed to open WebSockets, besides the node's own origin and
    /// http://localhost:<port>.
    #[arg(long, env = "CHAT_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Cost of new bcrypt password hashes, 4 to 31 (tests use 4 for speed).
    #[arg(long, env = "CHAT_BCRYPT_COST", default_value_t = 12, value_parser = clap::value_parser!(u32).range(4..=31))]
    pub bcrypt_cost: u32,
    /// Log JSON lines instead of human-readable text; RUST_LOG filters either.
    #[arg(long, env = "CHAT_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
    /// Upper bound on a graceful drain after SIGTERM.
    #[arg(long, env = "CHAT_DRAIN_TIMEOUT_SECS", default_value_t = 20)]
    pub drain_timeout_secs: u64,
    /// MySQL connections per node.
    #[arg(long, env = "CHAT_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: usize,
    /// Redis connections per node, besides the one pub/sub subscriber.
    #[arg(long, env = "CHAT_REDIS_POOL_SIZE", default_value_t = 16)]
    pub redis_pool_size: usize,
    /// Failed logins per username within 5 minutes, attempts in progress included,
    /// before logins for it answer 429.
    #[arg(long, env = "CHAT_LOGIN_MAX_FAILURES", default_value_t = 10)]
    pub login_max_failures: u32,
    /// Sustained WebSocket frames per second a connection may send.
    #[arg(long, env = "CHAT_WS_RATE", default_value_t = 20)]
    pub ws_rate: u32,
    /// Frames a connection may send in a burst above the sustained rate.
    #[arg(long, env = "CHAT_WS_BURST", default_value_t = 40)]
    pub ws_burst: u32,
    /// How often a node renews its presence keys.
    #[arg(long, env = "CHAT_PRESENCE_HEARTBEAT_MS", default_value_t = 5000)]
    pub presence_heartbeat_ms: u64,
    /// A socket is written presence changes at most once per this many ms (a lone change
    /// goes out within 50 ms), so that a storm of them (a reconnect storm brings thousands
    /// of users online) costs one write per socket per batch instead of one per change.
    /// Chat messages never wait.
    #[arg(long, env = "CHAT_PRESENCE_BATCH_MS", default_value_t = 1000)]
    pub presence_batch_ms: u64,
    /// A node whose heartbeat is older than this is dead and its users go offline.
    #[arg(long, env = "CHAT_PRESENCE_DEAD_AFTER_MS", default_value_t = 15000)]
    pub presence_dead_after_ms: u64,
    /// HTTP worker threads; defaults to the number of cores.
    #[arg(long, env = "CHAT_WORKERS")]
    pub workers: Option<usize>,
    /// Most messages the writer commits in one transaction
    #[arg(long, env = "CHAT_WRITER_MAX_BATCH", default_value_t = 128, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub writer_max_batch: u16,
    /// Messages that may wait for the writer before senders wait to hand theirs over
    #[arg(long, env = "CHAT_WRITER_QUEUE", default_value_t = 4096)]
    pub writer_queue: usize,
    // WebSocket hardening: what one connection may cost the node.
    /// `sync` and `chatHistory` requests per second a connection may send, sustained.
    #[arg(long, env = "CHAT_WS_HISTORY_RATE", default_value_t = 5)]
    pub ws_history_rate: u32,
    /// `sync` and `chatHistory` requests a connection may send in a burst.
    #[arg(long, env = "CHAT_WS_HISTORY_BURST", default_value_t = 10)]
    pub ws_history_burst: u32,
    /// Bytes that may wait for one connection before it is closed with 1008; at least
    /// 256 KiB, twice the largest reply.
    #[arg(long, env = "CHAT_WS_OUTBOX_BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(256 * 1024..))]
    pub ws_outbox_bytes: u64,
    /// Seconds frames may wait for a connection that takes none of them before it is closed
    /// with 1008.
    #[arg(long, env = "CHAT_WS_SEND_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub ws_send_timeout_secs: u64,
    /// Open WebSockets one user may have on one node; more are refused with 429.
    #[arg(long, env = "CHAT_WS_MAX_SOCKETS_PER_USER", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub ws_max_sockets_per_user: u64,
    // HTTP hardening: who is believed, and what a login or registration may cost.
    /// Comma-separated addresses or CIDR blocks of proxies whose X-Forwarded-For and
    /// X-Forwarded-Proto are believed; none by default, so clients cannot forge them.
    #[arg(long, env = "CHAT_TRUSTED_PROXIES", value_delimiter = ',', value_parser = proxy)]
    pub trusted_proxies: Vec<IpNet>,
    /// Development mode, for plain HTTP on a laptop: without CHAT_SESSION_KEY a fixed
    /// development key is used, and the session cookie is not Secure.
    #[arg(long, env = "CHAT_DEV", default_value_t = false)]
    pub dev: bool,
    /// Internal listener for /metrics, which the public port does not serve; keep it off
    /// the public network.
    #[arg(long, env = "CHAT_METRICS_LISTEN", default_value = "127.0.0.1:9090")]
    pub metrics_listen: SocketAddr,
    /// Failed logins from one client address within 5 minutes, attempts in progress
    /// included, before its logins answer 429.
    #[arg(
        long,
        env = "CHAT_LOGIN_MAX_FAILURES_PER_ADDRESS",
        default_value_t = 100
    )]
    pub login_max_failures_per_address: u32,
    /// Registrations from one client address within an hour before its registrations
    /// answer 429.
    #[arg(long, env = "CHAT_REGISTER_MAX_PER_ADDRESS", default_value_t = 20)]
    pub register_max_per_address: u32,
    /// Threads that run bcrypt at once for logins and registrations; defaults to the
    /// number of cores.
    #[arg(long, env = "CHAT_BCRYPT_THREADS")]
    pub bcrypt_threads: Option<usize>,
    /// Logins and registrations that may wait for a bcrypt thread; past that they get 503
    /// with Retry-After.
    #[arg(long, env = "CHAT_BCRYPT_QUEUE", default_value_t = 64)]
    pub bcrypt_queue: usize,
    /// Run pending migrations at start-up (turn off where a migration job owns the schema)
    #[arg(long, env = "CHAT_MIGRATE_ON_START", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,
    // Connection scale: how fast a node takes new sockets.
    /// WebSocket upgrades a node admits per second, sustained; past this and the burst an
    /// upgrade gets 503 with Retry-After, so a reconnect storm is spread out.
    #[arg(long, env = "CHAT_WS_ADMIT_RATE", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub ws_admit_rate: u32,
    /// WebSocket upgrades a node admits at once above the sustained rate.
    #[arg(long, env = "CHAT_WS_ADMIT_BURST", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub ws_admit_burst: u32,
    /// Sockets a node sets up at once (from the upgrade to the first frames), whatever the
    /// rate allows; further upgrades wait for one.
    #[arg(long, env = "CHAT_WS_ADMIT_IN_FLIGHT", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub ws_admit_in_flight: u64,
    /// Upgrades that may wait (up to 5 s) for a set-up; past this, or after the wait, an
    /// upgrade gets 503 with Retry-After 1. A waiting upgrade costs an open connection and
    /// no Redis or MySQL call; a refused one sends its client into backoff.
    #[arg(long, env = "CHAT_WS_ADMIT_QUEUE", default_value_t = 8192)]
    pub ws_admit_queue: u64,
    // Rooms: what one room and one user may grow to.
    /// Members a room may have, its owner included (at most PROTOCOL.md's 1000); past it
    /// `createRoom` and `addMembers` answer `room_full`.
    #[arg(long, env = "CHAT_ROOM_MAX_MEMBERS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(2..=1000))]
    pub room_max_members: u64,
    /// Rooms one user may belong to; bounds what `sync` and a connect read per user.
    #[arg(long, env = "CHAT_ROOMS_PER_USER", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub rooms_per_user: u64,
    /// Rooms one user may create per minute, across the cluster; past it `createRoom`
    /// answers `rate_limited`.
    #[arg(long, env = "CHAT_ROOM_CREATIONS_PER_MINUTE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub room_creations_per_minute: u32,
}

/// An address or a CIDR block; an address alone is a block of one.
fn proxy(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is neither an address nor a CIDR block"))
}

impl Config {
    pub fn room_limits(&self) -> RoomLimits {
        RoomLimits {
            max_members: usize::try_from(self.room_max_members).unwrap_or(1000),
            rooms_per_user: usize::try_from(self.rooms_per_user).unwrap_or(500),
        }
    }

    pub fn writer(&self) -> WriterConfig {
        WriterConfig {
            max_batch: usize::from(self.writer_max_batch),
            queue: self.writer_queue,
        }
    }

    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "node".to_owned());
            format!("{host}-{}", std::process::id())
        })
    }

    /// The key material and whether it is the development default.
    pub fn session_key(&self) -> (&str, bool) {
        match &self.session_key {
            Some(key) => (key, false),
            None => (DEV_SESSION_KEY, true),
        }
    }

    /// The node's own origins come first; configured ones follow.
    pub fn allowed_origins(&self) -> Vec<String> {
        let port = self.listen.port();
        let mut origins = vec![
            format!("http://{}", self.listen),
            format!("http://localhost:{port}"),
        ];
        origins.extend(
            self.allowed_origins
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty()),
        );
        origins
    }

    pub fn bcrypt_threads(&self) -> usize {
        self.bcrypt_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
    }

    pub fn presence_heartbeat(&self) -> Duration {
        Duration::from_millis(self.presence_heartbeat_ms.max(100))
    }

    pub fn presence_batch(&self) -> Duration {
        Duration::from_millis(self.presence_batch_ms)
    }

    pub fn presence_dead_after(&self) -> Duration {
        Duration::from_millis(self.presence_dead_after_ms.max(300))
    }
}
