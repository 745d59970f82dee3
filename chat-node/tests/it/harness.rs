//! `Cluster` starts nodes as child processes; `User` speaks HTTP with a cookie jar and
//! opens WebSockets with the session cookie, like a browser would.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::sql_types::BigInt;
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};
use futures_util::{SinkExt, StreamExt};
use rand::distr::{Alphanumeric, SampleString};
use reqwest::cookie::CookieStore;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

pub const PASSWORD: &str = "correct horse";
/// How long a test waits for a frame that should come.
pub const FRAME_WAIT: Duration = Duration::from_secs(10);

pub fn random(n: usize) -> String {
    Alphanumeric
        .sample_string(&mut rand::rng(), n)
        .to_lowercase()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub struct Node {
    child: Option<Child>,
    pub port: u16,
    /// The internal listener, which serves `/metrics`.
    pub metrics_port: u16,
    pub id: String,
    extra_env: Vec<(String, String)>,
}

impl Node {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.metrics_port)
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }
}

/// The shared MariaDB every test uses unless it brings its own.
pub const SHARED_DB_BASE: &str = "mysql://root@127.0.0.1:3306";
/// The shared Redis every test uses unless it brings its own.
pub const SHARED_REDIS_URL: &str = "redis://127.0.0.1:6379";

pub struct Cluster {
    pub db: String,
    /// `mysql://user@host:port`, without a database name.
    db_base: String,
    /// The Redis every node of this cluster uses.
    pub redis_url: String,
    pub prefix: String,
    session_key: String,
    pub nodes: Vec<Node>,
    pub http: reqwest::Client,
}

impl Cluster {
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, &[]).await
    }

    /// `env` is extra environment for every node.
    pub async fn start_with(n: usize, env: &[(&str, &str)]) -> Self {
        Self::start_on(n, env, SHARED_DB_BASE).await
    }

    /// Like `start_with`, on the MariaDB server at `db_base` (`mysql://root@host:port`).
    pub async fn start_on(n: usize, env: &[(&str, &str)], db_base: &str) -> Self {
        Self::start_on_servers(n, env, db_base, SHARED_REDIS_URL).await
    }

    /// Like `start_on`, with the Redis at `redis_url` (`redis://host:port`) too.
    pub async fn start_on_servers(
        n: usize,
        env: &[(&str, &str)],
        db_base: &str,
        redis_url: &str,
    ) -> Self {
        let tag = random(10);
        let mut cluster = Self {
            db: format!("chat_test_{tag}"),
            db_base: db_base.trim_end_matches('/').to_owned(),
            redis_url: redis_url.to_owned(),
            prefix: format!("test_{tag}"),
            session_key: random(64),
            nodes: Vec::new(),
            http: reqwest::Client::new(),
        };
        for i in 0..n {
            let node = Node {
                child: None,
                port: free_port(),
                metrics_port: free_port(),
                id: format!("node-{tag}-{i}"),
                extra_env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            };
            cluster.nodes.push(node);
            cluster.launch(i).await;
        }
        cluster
    }

    pub fn database_url(&self) -> String {
        format!("{}/{}", self.db_base, self.db)
    }

    pub fn url(&self, i: usize) -> String {
        self.nodes[i].url()
    }

    /// Starts node `i` (again) on its port and waits until it is ready.
    fn log_path(&self, i: usize) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("{}-{}.log", self.db, self.nodes[i].id))
    }

    pub async fn launch(&mut self, i: usize) {
        let log = self.log_path(i);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("node log file");
        let node = &self.nodes[i];
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chat-node"));
        cmd.env("CHAT_LISTEN", format!("127.0.0.1:{}", node.port))
            .env(
                "CHAT_METRICS_LISTEN",
                format!("127.0.0.1:{}", node.metrics_port),
            )
            .env("DATABASE_URL", self.database_url())
            .env("REDIS_URL", &self.redis_url)
            .env("CHAT_REDIS_PREFIX", &self.prefix)
            .env("CHAT_NODE_ID", &node.id)
            .env("CHAT_SESSION_KEY", &self.session_key)
            .env("CHAT_BCRYPT_COST", "4")
            .env("CHAT_WORKERS", "2")
            .env("CHAT_DB_POOL_SIZE", "4")
            // Tests page through `sync` in tiny pages, many walks in a row; `ws_limits`
            // tests the per-socket read rate with settings of its own.
            .env("CHAT_WS_HISTORY_BURST", "1000")
            // Tests register many users from 127.0.0.1; the tests of this limit set it.
            .env("CHAT_REGISTER_MAX_PER_ADDRESS", "1000000")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log));
        for (k, v) in &node.extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("chat-node starts");
        self.nodes[i].child = Some(child);
        let url = format!("{}/readyz", self.url(i));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.http.get(&url).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "node {i} did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends a signal (`TERM`, `KILL`) to node `i`.
    pub fn signal(&mut self, i: usize, signal: &str) {
        let pid = self.nodes[i].pid();
        assert!(pid > 0, "node {i} is running");
        let ok = Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "signal {signal} delivered");
    }

    /// SIGKILL: the node dies without closing sockets or cleaning Redis.
    pub fn kill(&mut self, i: usize) {
        self.signal(i, "KILL");
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.wait();
        }
    }

    /// Waits for node `i` to exit; returns its exit status and how long that took.
    pub async fn wait_exit(
        &mut self,
        i: usize,
        bound: Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + bound;
        let child = self.nodes[i].child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.nodes[i].child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn user(&self, node: usize) -> User {
        User::new(self.url(node))
    }

    /// A registered and logged-in user talking to `node`.
    pub async fn login_new(&self, node: usize, name: &str) -> User {
        let mut user = self.user(node);
        let username = format!("{name}_{}", random(5));
        let r = user.register(&username, PASSWORD).await;
        assert_eq!(r.status(), 201, "register {username}");
        let r = user.login(&username, PASSWORD).await;
        assert_eq!(r.status(), 200, "login {username}");
        user.username = username;
        user
    }

    pub async fn db(&self) -> AsyncMysqlConnection {
        AsyncMysqlConnection::establish(&self.database_url())
            .await
            .expect("test database connection")
    }

    pub async fn count(&self, sql: &str) -> i64 {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = self.db().await;
        diesel::sql_query(sql)
            .get_result::<Count>(&mut conn)
            .await
            .expect("count query")
            .n
    }

    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis_url.as_str())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection")
    }

    pub async fn redis_keys(&self, pattern: &str) -> Vec<String> {
        let mut conn = self.redis().await;
        redis::cmd("KEYS")
            .arg(format!("{}:{pattern}", self.prefix))
            .query_async(&mut conn)
            .await
            .expect("KEYS")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // Node logs are kept for a failed test only, and named so it can be read.
        for i in 0..self.nodes.len() {
            let log = self.log_path(i);
            if std::thread::panicking() {
                eprintln!("node log kept: {}", log.display());
            } else {
                let _ = std::fs::remove_file(log);
            }
        }
        let (host, port) = host_port(&self.db_base);
        let _ = Command::new("mariadb")
            .args(["-uroot", "--connect-timeout=2"])
            .arg(format!("-h{host}"))
            .arg(format!("-P{port}"))
            .arg("-e")
            .arg(format!("DROP DATABASE IF EXISTS `{}`", self.db))
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "redis-cli -u '{url}' --scan --pattern '{}:*' | xargs -r redis-cli -u '{url}' del >/dev/null",
                self.prefix,
                url = self.redis_url,
            ))
            .stderr(Stdio::null())
            .status();
    }
}

/// Host and port of `mysql://user@host:port`.
fn host_port(base: &str) -> (String, String) {
    let server = base.rsplit('@').next().unwrap_or(base);
    let server = server.trim_start_matches("mysql://");
    match server.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.to_owned()),
        None => (server.to_owned(), "3306".to_owned()),
    }
}

/// A person with a browser: a cookie jar shared by every node of the cluster (cookies
/// ignore ports), so a session made on one node is presented to the others.
pub struct User {
    pub base: String,
    pub username: String,
    pub jar: Arc<reqwest::cookie::Jar>,
    pub http: reqwest::Client,
}

impl User {
    pub fn new(base: String) -> Self {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .build()
            .expect("http client");
        Self {
            base,
            username: String::new(),
            jar,
            http,
        }
    }

    /// The same person, now reaching another node.
    pub fn via(&self, base: String) -> Self {
        let http = reqwest::Client::builder()
            .cookie_provider(self.jar.clone())
            .build()
            .expect("http client");
        Self {
            base,
            username: self.username.clone(),
            jar: self.jar.clone(),
            http,
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request")
    }

    pub async fn register(&self, username: &str, password: &str) -> reqwest::Response {
        self.post(
            "/api/register",
            json!({"username": username, "password": password}),
        )
        .await
    }

    pub async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        self.post(
            "/api/login",
            json!({"username": username, "password": password}),
        )
        .await
    }

    pub fn cookie(&self) -> Option<String> {
        let url = self.base.parse().expect("url");
        self.jar
            .cookies(&url)
            .and_then(|v| v.to_str().ok().map(str::to_owned))
    }

    pub async fn ws(&self) -> Ws {
        self.ws_at(&self.base).await
    }

    /// Opens a WebSocket on the node at `base` with this user's session, and reads the
    /// `updateUsers` frame every connection starts with.
    pub async fn ws_at(&self, base: &str) -> Ws {
        let mut ws = self.try_ws_at(base, None).await.expect("websocket upgrade");
        let first = ws.next().await;
        assert_eq!(first["type"], "updateUsers", "first frame: {first}");
        ws.users = first;
        ws
    }

    pub async fn try_ws_at(
        &self,
        base: &str,
        origin: Option<&str>,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let url = format!("{}/ws", base.replacen("http://", "ws://", 1));
        let mut req = url.into_client_request()?;
        if let Some(cookie) = self.cookie() {
            req.headers_mut()
                .insert("Cookie", cookie.parse().expect("cookie header"));
        }
        if let Some(origin) = origin {
            req.headers_mut()
                .insert("Origin", origin.parse().expect("origin header"));
        }
        let (stream, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Ws {
            stream,
            users: Value::Null,
            closed: None,
        })
    }
}

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON frame of `stream` within `wait`; `Value::Null` once closed, with the
/// close code in `closed`.
async fn next_json<S>(
    stream: &mut S,
    closed: &mut Option<CloseCode>,
    wait: Duration,
) -> Option<Value>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let msg = tokio::time::timeout_at(deadline, stream.next())
            .await
            .ok()?;
        match msg {
            Some(Ok(Message::Text(t))) => {
                return Some(serde_json::from_str(t.as_str()).expect("frames are JSON"))
            }
            Some(Ok(Message::Close(frame))) => {
                *closed = frame.map(|f| f.code);
                return Some(Value::Null);
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Some(Value::Null),
        }
    }
}

/// The sending half of a split [`Ws`].
pub struct WsSender {
    sink: futures_util::stream::SplitSink<Stream, Message>,
}

impl WsSender {
    /// False once the socket is gone.
    pub async fn send(&mut self, frame: Value) -> bool {
        self.sink
            .send(Message::text(frame.to_string()))
            .await
            .is_ok()
    }

    pub async fn close(mut self) {
        let _ = self.sink.close().await;
    }
}

/// The reading half of a split [`Ws`].
pub struct WsReader {
    stream: futures_util::stream::SplitStream<Stream>,
    pub closed: Option<CloseCode>,
}

impl WsReader {
    /// The next JSON frame; `Value::Null` once closed.
    pub async fn try_next(&mut self, wait: Duration) -> Option<Value> {
        next_json(&mut self.stream, &mut self.closed, wait).await
    }
}

pub struct Ws {
    stream: Stream,
    /// The `updateUsers` frame the connection opened with.
    pub users: Value,
    /// The close code, once the server closed the socket.
    pub closed: Option<CloseCode>,
}

impl Ws {
    pub async fn send(&mut self, frame: Value) {
        self.stream
            .send(Message::text(frame.to_string()))
            .await
            .expect("send frame");
    }

    /// Like `send`, for sockets the server may be closing.
    pub async fn try_send(&mut self, frame: Value) -> bool {
        self.stream
            .send(Message::text(frame.to_string()))
            .await
            .is_ok()
    }

    pub async fn send_raw(&mut self, msg: Message) {
        self.stream.send(msg).await.expect("send raw frame");
    }

    /// The next JSON frame; `Value::Null` once closed.
    pub async fn try_next(&mut self, wait: Duration) -> Option<Value> {
        next_json(&mut self.stream, &mut self.closed, wait).await
    }

    /// A sending half and a reading half, for a test that sends while it reads.
    pub fn split(self) -> (WsSender, WsReader) {
        let (sink, stream) = self.stream.split();
        (
            WsSender { sink },
            WsReader {
                stream,
                closed: self.closed,
            },
        )
    }

    pub async fn next(&mut self) -> Value {
        self.try_next(FRAME_WAIT).await.expect("a frame in time")
    }

    /// Reads until a frame of `kind` that satisfies `pred`, skipping others.
    pub async fn expect(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + FRAME_WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = self
                .try_next(left)
                .await
                .unwrap_or_else(|| panic!("no {kind} frame in time"));
            assert!(!frame.is_null(), "socket closed while waiting for {kind}");
            if frame["type"] == kind && pred(&frame) {
                return frame;
            }
        }
    }

    pub async fn expect_type(&mut self, kind: &str) -> Value {
        self.expect(kind, |_| true).await
    }

    /// Asserts that no frame of `kind` satisfying `pred` arrives within `wait`.
    pub async fn expect_none(&mut self, kind: &str, wait: Duration, pred: impl Fn(&Value) -> bool) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.try_next(left).await {
                None => return,
                Some(Value::Null) => return,
                Some(frame) => assert!(
                    !(frame["type"] == kind && pred(&frame)),
                    "unexpected {kind} frame: {frame}"
                ),
            }
        }
    }

    /// Reads until the server closes; returns the close code.
    pub async fn expect_close(&mut self, wait: Duration) -> Option<CloseCode> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.try_next(left).await {
                None => panic!("socket still open after {wait:?}"),
                Some(Value::Null) => return self.closed,
                Some(_) => continue,
            }
        }
    }

    pub async fn message(&mut self, peer: &str, text: &str, client_id: &str) {
        self.send(
            json!({"type": "chatMessage", "peer": peer, "text": text, "clientId": client_id}),
        )
        .await;
    }

    /// Sends and waits for the acknowledgement (the message echoed back with its id).
    pub async fn send_acked(&mut self, peer: &str, text: &str) -> Value {
        let client_id = random(12);
        self.message(peer, text, &client_id).await;
        let frame = self
            .expect("chatMessage", |f| {
                f["message"]["clientId"] == client_id.as_str()
            })
            .await;
        frame["message"].clone()
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
        // Drain until the server's close arrives, so its cleanup has started.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(_)) = self.stream.next().await {}
        })
        .await;
    }

    pub fn lists(&self, username: &str) -> Option<bool> {
        self.users["users"]
            .as_array()?
            .iter()
            .find(|u| u["username"] == username)
            .and_then(|u| u["online"].as_bool())
    }
}
