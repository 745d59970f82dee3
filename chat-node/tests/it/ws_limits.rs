//! What one WebSocket client may cost a node: clients that stop reading, floods of any
//! kind of frame, invalid UTF-8, too many sockets, and `sync`/`chatHistory` bursts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::WebSocketStream;

use crate::harness::{Cluster, User, SHARED_DB_BASE};
use crate::redis_server::RedisServer;

pub(crate) type Raw = WebSocketStream<TcpStream>;

/// A socket of `user` on `base` that reads nothing by itself; `recv_buffer` shrinks the
/// kernel's receive buffer, so a client that stops reading is felt at once.
pub(crate) async fn raw_ws(user: &User, base: &str, recv_buffer: Option<u32>) -> Raw {
    let addr = base.trim_start_matches("http://");
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let tcp = socket.connect(addr.parse().unwrap()).await.unwrap();
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("Cookie", user.cookie().unwrap().parse().unwrap());
    tokio_tungstenite::client_async(req, tcp).await.unwrap().0
}

/// Reads until the server closes: the error codes seen on the way, and the close code.
pub(crate) async fn read_to_close(ws: &mut Raw, wait: Duration) -> (Vec<String>, Option<u16>) {
    let mut codes = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the server closed the socket in time");
        match msg {
            Some(Ok(Message::Text(t))) => {
                let frame: Value = serde_json::from_str(t.as_str()).unwrap();
                if frame["type"] == "error" {
                    codes.push(frame["code"].as_str().unwrap_or_default().to_owned());
                }
            }
            Some(Ok(Message::Close(frame))) => return (codes, frame.map(|f| u16::from(f.code))),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return (codes, None),
        }
    }
}

pub(crate) async fn metrics(c: &Cluster) -> String {
    let url = c.nodes[0].metrics_url();
    c.http.get(url).send().await.unwrap().text().await.unwrap()
}

pub(crate) fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// VmRSS and VmHWM of a process, in MiB.
pub(crate) fn memory_mib(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
            / 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// 500 messages of 4,000 control characters between `a` and `b`: each escapes to 24 KB of
/// JSON, so a `sync` of 500 would be 12 MB without a bound on replies.
pub(crate) async fn seed_long_messages(c: &Cluster, a: &User, b: &User) {
    let mut ws = a.ws().await;
    let first = ws.send_acked(&b.username, "first").await;
    ws.close().await;
    let id = first["id"].as_i64().unwrap();
    use diesel_async::RunQueryDsl;
    let mut db = c.db().await;
    diesel::sql_query(format!(
        "INSERT INTO messages (channel_id, sender_id, recipient_id, client_id, body, sent_at) \
         SELECT channel_id, sender_id, recipient_id, NULL, REPEAT(CHAR(1 USING utf8mb4), 4000), sent_at \
         FROM messages CROSS JOIN seq_1_to_499 WHERE id = {id}"
    ))
    .execute(&mut db)
    .await
    .unwrap();
}

/// Two other users chat on the node until stopped; returns how many messages were
/// acknowledged and the slowest acknowledgement.
fn chatter(
    mut a: crate::harness::Ws,
    peer: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u32, Duration)> {
    tokio::spawn(async move {
        let (mut acked, mut slowest) = (0, Duration::ZERO);
        while !stop.load(Ordering::Relaxed) {
            let start = Instant::now();
            a.send_acked(&peer, "still chatting").await;
            slowest = slowest.max(start.elapsed());
            acked += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (acked, slowest)
    })
}

pub(crate) const SYNC_ALL: &str = r#"{"type":"sync","after":0,"limit":500}"#;
const NODE_MEMORY_BOUND_MIB: u64 = 150;

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_with_1008_while_the_node_stays_small() {
    let c = Cluster::start_with(
        1,
        &[
            ("CHAT_WS_RATE", "1000"),
            ("CHAT_WS_BURST", "1000"),
            ("CHAT_WS_HISTORY_RATE", "1000"),
            ("CHAT_WS_HISTORY_BURST", "1000"),
        ],
    )
    .await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(0, "bob").await;
    seed_long_messages(&c, &alice, &bob).await;
    let carol = c.login_new(0, "carol").await;
    let dave = c.login_new(0, "dave").await;
    let _dave_ws = dave.ws().await;
    let stop = Arc::new(AtomicBool::new(false));
    let chat = chatter(carol.ws().await, dave.username.clone(), stop.clone());

    // Asks for far more than any buffer holds, and never reads.
    let mut slow = raw_ws(&alice, &c.url(0), Some(4096)).await;
    for _ in 0..80 {
        if slow.send(Message::text(SYNC_ALL)).await.is_err() {
            break;
        }
    }
    let pid = c.nodes[0].pid();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (rss, hwm) = memory_mib(pid);
        assert!(
            hwm < NODE_MEMORY_BOUND_MIB,
            "node grew to {hwm} MiB (now {rss} MiB)"
        );
        let m = metrics(&c).await;
        if metric(&m, r#"chat_ws_forced_closes_total{reason="slow_reader"}"#) == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the slow socket is still open");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Others chatted on meanwhile, and keep doing so.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, slowest) = chat.await.unwrap();
    assert!(acked >= 5, "only {acked} messages acknowledged meanwhile");
    assert!(slowest < Duration::from_secs(2), "an ack took {slowest:?}");
    let (_, hwm) = memory_mib(pid);
    eprintln!("node peak RSS {hwm} MiB");
    assert!(hwm < NODE_MEMORY_BOUND_MIB);

    // Once the client reads again it finds what was already on its way, then the close.
    let (_, code) = read_to_close(&mut slow, Duration::from_secs(30)).await;
    assert_eq!(code, Some(1008));
}

#[tokio::test]
async fn a_client_whose_frames_wait_past_the_send_timeout_is_closed_with_1008() {
    let c = Cluster::start_with(
        1,
        &[
            ("CHAT_WS_HISTORY_RATE", "1000"),
            ("CHAT_WS_HISTORY_BURST", "1000"),
            ("CHAT_WS_OUTBOX_BYTES", "268435456"),
            ("CHAT_WS_SEND_TIMEOUT_SECS", "2"),
        ],
    )
    .await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(0, "bob").await;
    seed_long_messages(&c, &alice, &bob).await;
    // Far below the outbox bound, far above what the kernel buffers hold.
    let mut slow = raw_ws(&alice, &c.url(0), Some(4096)).await;
    for _ in 0..35 {
        slow.send(Message::text(SYNC_ALL)).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = metrics(&c).await;
        if metric(&m, r#"chat_ws_forced_closes_total{reason="stalled"}"#) == 1.0 {
            assert_eq!(metric(&m, "chat_ws_connections"), 0.0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled socket is still open"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, code) = read_to_close(&mut slow, Duration::from_secs(30)).await;
    assert_eq!(code, Some(1008));
}

#[tokio::test]
async fn a_binary_flood_is_rate_limited_then_closed_with_1008() {
    let c = Cluster::start(1).await;
    let alice = c.login_new(0, "alice").await;
    let mut ws = raw_ws(&alice, &c.url(0), None).await;
    for _ in 0..200 {
        if ws.send(Message::binary(vec![1u8; 16])).await.is_err() {
            break;
        }
    }
    let (codes, close) = read_to_close(&mut ws, Duration::from_secs(10)).await;
    assert_eq!(codes.first().map(String::as_str), Some("bad_request"));
    assert!(codes.iter().any(|c| c == "rate_limited"), "{codes:?}");
    assert_eq!(close, Some(1008));
    let m = metrics(&c).await;
    assert!(metric(&m, r#"chat_ws_frames_refused_total{reason="rate"}"#) >= 50.0);
    assert_eq!(
        metric(&m, r#"chat_ws_forced_closes_total{reason="flooding"}"#),
        1.0
    );
}

#[tokio::test]
async fn a_ping_flood_is_closed_with_1008() {
    let c = Cluster::start(1).await;
    let alice = c.login_new(0, "alice").await;
    let mut ws = raw_ws(&alice, &c.url(0), None).await;
    for _ in 0..300 {
        if ws.send(Message::Ping(vec![7u8; 125].into())).await.is_err() {
            break;
        }
    }
    let (codes, close) = read_to_close(&mut ws, Duration::from_secs(10)).await;
    assert!(
        codes.is_empty(),
        "control frames get no error frames: {codes:?}"
    );
    assert_eq!(close, Some(1008));
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    let c = Cluster::start(1).await;
    let alice = c.login_new(0, "alice").await;
    let mut ws = raw_ws(&alice, &c.url(0), None).await;
    let bad = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(bad)).await.unwrap();
    let (codes, close) = read_to_close(&mut ws, Duration::from_secs(10)).await;
    assert!(codes.is_empty(), "{codes:?}");
    assert_eq!(close, Some(1007));
}

#[tokio::test]
async fn a_user_past_the_socket_cap_is_refused_with_429() {
    let c = Cluster::start_with(1, &[("CHAT_WS_MAX_SOCKETS_PER_USER", "3")]).await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(0, "bob").await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(alice.ws().await);
    }
    match alice.try_ws_at(&c.url(0), None).await {
        Err(Error::Http(resp)) => {
            assert_eq!(resp.status(), 429);
            let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "too_many_connections");
        }
        other => panic!("expected 429, got {:?}", other.map(|_| "a socket")),
    }
    // Other users are not counted against alice, and a closed socket frees its place.
    let mut b = bob.ws().await;
    open.pop().unwrap().close().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut again = loop {
        if let Ok(ws) = alice.try_ws_at(&c.url(0), None).await {
            break ws;
        }
        assert!(Instant::now() < deadline, "the closed socket still counts");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(again.next().await["type"], "updateUsers");
    b.send_acked(&alice.username, "hi").await;
}

#[tokio::test]
async fn sync_and_history_have_a_tighter_rate_of_their_own_that_paging_waits_for() {
    let c = Cluster::start_with(
        1,
        &[
            ("CHAT_WS_HISTORY_RATE", "1"),
            ("CHAT_WS_HISTORY_BURST", "3"),
        ],
    )
    .await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(0, "bob").await;
    let mut a = alice.ws().await;
    let first = a.send_acked(&bob.username, "one").await;
    a.send_acked(&bob.username, "two").await;
    let page = json!({"type": "sync", "after": 0, "limit": 1});
    for _ in 0..3 {
        a.send(page.clone()).await;
    }
    a.send(json!({"type": "chatHistory", "peer": bob.username}))
        .await;
    a.send(page).await;
    // The next page of the walk the last answer began waits for its turn instead.
    a.send(json!({"type": "sync", "after": first["id"], "limit": 1}))
        .await;
    let mut answers = Vec::new();
    for _ in 0..6 {
        let f = a.next().await;
        answers.push(match f["type"].as_str().unwrap() {
            "error" => f["code"].as_str().unwrap().to_owned(),
            "sync" => format!("sync {}", f["messages"][0]["text"].as_str().unwrap()),
            other => other.to_owned(),
        });
    }
    assert_eq!(
        answers,
        [
            "sync one",
            "sync one",
            "sync one",
            "rate_limited",
            "rate_limited",
            "sync two"
        ]
    );
    // Other frames are not held back by it, and the bucket refills.
    a.send_acked(&bob.username, "not a read").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    a.send(json!({"type": "chatHistory", "peer": bob.username}))
        .await;
    let page = a.expect_type("chatHistory").await;
    assert_eq!(page["messages"][2]["text"], "not a read");
}

/// Calls of `GET` the Redis at `url` has answered: how actix-session loads a session.
async fn session_reads(url: &str) -> u64 {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .and_then(|l| l.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// In a reconnect storm most upgrades are refused; admission comes before the session
/// middleware, so a refused upgrade costs no session read in Redis. An upgrade without a
/// session cookie is not counted against admission: it gets 401 however busy the node is.
#[tokio::test]
async fn an_upgrade_refused_by_admission_costs_no_session_read() {
    let redis = RedisServer::start().await;
    let c = Cluster::start_on_servers(
        1,
        &[("CHAT_WS_ADMIT_RATE", "1"), ("CHAT_WS_ADMIT_BURST", "1")],
        SHARED_DB_BASE,
        &redis.url(),
    )
    .await;
    let alice = c.login_new(0, "alice").await;
    let _open = alice.ws().await;

    let before = session_reads(&redis.url()).await;
    let (mut refused, mut admitted) = (0, 0);
    for _ in 0..20 {
        match alice.try_ws_at(&c.url(0), None).await {
            Err(Error::Http(resp)) => {
                assert_eq!(resp.status(), 503);
                assert!(resp.headers().contains_key("retry-after"));
                refused += 1;
            }
            Ok(_) => admitted += 1,
            Err(e) => panic!("upgrade failed: {e}"),
        }
    }
    let reads = session_reads(&redis.url()).await - before;
    assert!(refused >= 10, "{refused} refused, {admitted} admitted");
    assert_eq!(reads, admitted, "only admitted upgrades read the session");

    match c.user(0).try_ws_at(&c.url(0), None).await {
        Err(Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| "a socket")),
    }
}
