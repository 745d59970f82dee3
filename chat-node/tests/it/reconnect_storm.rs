//! A reconnect storm under admission control: every client of a drained node comes back
//! on the other node at once. That node admits upgrades at a bounded rate and answers the
//! rest 503 `unavailable` with `Retry-After`; the clients wait as told (with jitter),
//! reconnect, `sync` from the highest id they saw, and every acknowledged message reaches
//! its recipient, under the id it was acknowledged with, and is stored once.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite;

use crate::harness::{random, Cluster, User, Ws};

/// Clients of the node that drains (node 1), and senders on the one that stays.
const CLIENTS: usize = 300;
const SENDERS: usize = 10;
const SEND_EVERY: Duration = Duration::from_millis(100);
/// Upgrades node 0 admits: 50 at once, then 150 a second, so 300 arrivals are a storm.
const NODE_ENV: &[(&str, &str)] = &[
    ("CHAT_WS_ADMIT_RATE", "150"),
    ("CHAT_WS_ADMIT_BURST", "50"),
    ("CHAT_WS_RATE", "1000"),
    ("CHAT_WS_BURST", "1000"),
];
/// Every drained client is back, synced, within this of SIGTERM.
const BACK_BOUND: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Log {
    /// clientId → every id it was received under (live or through `sync`).
    received: HashMap<String, BTreeSet<i64>>,
    max_id: i64,
    opened: usize,
    refused: usize,
    closes: Vec<Option<u16>>,
    /// Open, with its reconnect's `sync` walked to the end.
    synced: bool,
}

fn lock(log: &Mutex<Log>) -> MutexGuard<'_, Log> {
    log.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn jitter(max: Duration) -> Duration {
    Duration::from_millis(rand::random_range(0..max.as_millis().max(1) as u64))
}

/// Opens a socket on `base`, waiting out every 503 as its `Retry-After` says.
async fn open(user: &User, base: &str, log: &Mutex<Log>) -> Ws {
    loop {
        match user.try_ws_at(base, None).await {
            Ok(mut ws) => {
                let first = ws.next().await;
                assert_eq!(first["type"], "updateUsers", "first frame: {first}");
                lock(log).opened += 1;
                return ws;
            }
            Err(tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 503, "only admission refuses here");
                let after: u64 = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .expect("a 503 says when to retry");
                assert!((1..=30).contains(&after), "Retry-After: {after}");
                lock(log).refused += 1;
                let wait = Duration::from_secs(after);
                tokio::time::sleep(wait / 2 + jitter(wait)).await;
            }
            Err(e) => panic!("upgrade failed: {e}"),
        }
    }
}

/// Records the messages of a `chatMessage` or `sync` frame; the next `sync` page, if any.
fn record(log: &mut Log, frame: &Value) -> Option<Value> {
    let messages = match frame["type"].as_str() {
        Some("chatMessage") => vec![frame["message"].clone()],
        Some("sync") => frame["messages"].as_array().cloned().unwrap_or_default(),
        _ => return None,
    };
    for m in &messages {
        let (Some(id), Some(cid)) = (m["id"].as_i64(), m["clientId"].as_str()) else {
            continue;
        };
        log.received.entry(cid.to_owned()).or_default().insert(id);
        log.max_id = log.max_id.max(id);
    }
    if frame["type"] == "sync" {
        if frame["hasMore"] == true {
            return Some(json!({"type": "sync", "after": log.max_id, "limit": 500}));
        }
        log.synced = true;
    }
    None
}

/// A drained node's client: on node 1 first, back on node 0 at once after it closes.
async fn client(user: User, bases: [String; 2], log: Arc<Mutex<Log>>, stop: watch::Receiver<bool>) {
    let mut base = &bases[1];
    let mut reconnect = false;
    while !*stop.borrow() {
        let mut ws = open(&user, base, &log).await;
        if reconnect {
            let after = lock(&log).max_id;
            ws.send(json!({"type": "sync", "after": after, "limit": 500}))
                .await;
        } else {
            lock(&log).synced = true;
        }
        loop {
            if *stop.borrow() {
                ws.close().await;
                return;
            }
            match ws.try_next(Duration::from_millis(100)).await {
                None => continue,
                Some(Value::Null) => break,
                Some(frame) => {
                    let next = record(&mut lock(&log), &frame);
                    if let Some(next) = next {
                        ws.send(next).await;
                    }
                }
            }
        }
        let mut log = lock(&log);
        log.closes.push(ws.closed.map(u16::from));
        log.synced = false;
        drop(log);
        // No pause: every client arrives together, which is the storm under test.
        base = &bases[0];
        reconnect = true;
    }
}

/// What a sender saw acknowledged: clientId → (recipient, id).
type Acked = Arc<Mutex<HashMap<String, (usize, i64)>>>;

/// A sender on node 0: a message every [`SEND_EVERY`] to the drained clients in turn.
async fn sender(
    ws: Ws,
    first: usize,
    names: Arc<Vec<String>>,
    acked: Acked,
    stop: watch::Receiver<bool>,
) {
    let (mut tx, mut rx) = ws.split();
    let reading = tokio::spawn({
        let acked = acked.clone();
        let names = names.clone();
        async move {
            while let Some(frame) = rx.try_next(Duration::from_secs(60)).await {
                if frame.is_null() {
                    return;
                }
                let m = &frame["message"];
                if let (Some(id), Some(cid), Some(to)) =
                    (m["id"].as_i64(), m["clientId"].as_str(), m["to"].as_str())
                {
                    if let Some(k) = names.iter().position(|n| n == to) {
                        acked.lock().unwrap().insert(cid.to_owned(), (k, id));
                    }
                }
            }
        }
    });
    let mut k = first;
    let mut tick = tokio::time::interval(SEND_EVERY);
    while !*stop.borrow() {
        tick.tick().await;
        let cid = random(12);
        let sent = tx
            .send(
                json!({"type": "chatMessage", "peer": names[k], "text": "storm", "clientId": cid}),
            )
            .await;
        assert!(sent, "the surviving node keeps its senders' sockets");
        k = (k + SENDERS) % CLIENTS;
    }
    // Acknowledgements still on their way.
    tokio::time::sleep(Duration::from_secs(2)).await;
    tx.close().await;
    reading.abort();
}

async fn wait_until(bound: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done()
}

async fn metric(c: &Cluster, node: usize, name: &str) -> f64 {
    let text = c
        .http
        .get(c.nodes[node].metrics_url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_nodes_clients_are_admitted_at_a_bounded_rate_and_miss_nothing() {
    let mut c = Cluster::start_with(2, NODE_ENV).await;
    let bases = [c.url(0), c.url(1)];
    let users: Vec<User> = futures_util::stream::iter(0..CLIENTS + SENDERS)
        .map(|i| {
            let c = &c;
            async move { c.login_new(if i < CLIENTS { 1 } else { 0 }, "st").await }
        })
        .buffered(16)
        .collect()
        .await;
    let names: Arc<Vec<String>> = Arc::new(
        users[..CLIENTS]
            .iter()
            .map(|u| u.username.clone())
            .collect(),
    );
    let (stop_clients, stop) = watch::channel(false);
    let (stop_senders, senders_stop) = watch::channel(false);

    let logs: Vec<Arc<Mutex<Log>>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let mut users = users.into_iter();
    let mut clients = Vec::new();
    for log in &logs {
        let user = users.next().unwrap();
        clients.push(tokio::spawn(client(
            user,
            bases.clone(),
            log.clone(),
            stop.clone(),
        )));
    }
    assert!(
        wait_until(Duration::from_secs(60), || logs
            .iter()
            .all(|l| lock(l).opened == 1))
        .await,
        "every client opened on node 1, through its admission limit"
    );
    let refused_on_setup: usize = logs.iter().map(|l| lock(l).refused).sum();

    let acked: Acked = Arc::default();
    let mut senders = Vec::new();
    for (j, user) in users.enumerate() {
        let ws = user.ws().await;
        senders.push(tokio::spawn(sender(
            ws,
            j,
            names.clone(),
            acked.clone(),
            senders_stop.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked_before = acked.lock().unwrap().len();

    let term = Instant::now();
    c.signal(1, "TERM");
    let back = wait_until(BACK_BOUND, || {
        logs.iter().all(|l| {
            let l = lock(l);
            l.opened == 2 && l.synced
        })
    })
    .await;
    let back_after = term.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_senders.send(true).unwrap();
    for s in senders {
        s.await.unwrap();
    }
    // Deliveries of the last acknowledged messages.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_clients.send(true).unwrap();
    for client in clients {
        let _ = tokio::time::timeout(Duration::from_secs(10), client).await;
    }

    let refused_storm: usize =
        logs.iter().map(|l| lock(l).refused).sum::<usize>() - refused_on_setup;
    let refused_metric = metric(&c, 0, "chat_ws_admission_refused_total").await;
    let acked = acked.lock().unwrap().clone();
    let mut lost = Vec::new();
    let mut doubled = Vec::new();
    for (cid, (k, id)) in &acked {
        match lock(&logs[*k]).received.get(cid) {
            None => lost.push(cid.clone()),
            Some(ids) if ids.len() > 1 || !ids.contains(id) => {
                doubled.push((cid.clone(), ids.clone()))
            }
            Some(_) => {}
        }
    }
    let stored_twice = c
        .count("SELECT COUNT(*) AS n FROM (SELECT client_id FROM messages GROUP BY sender_id, client_id HAVING COUNT(*) > 1) d")
        .await;
    println!(
        "STORM clients={CLIENTS} acked={} acked_before_drain={acked_before} refused_on_setup={refused_on_setup} \
         refused_in_storm={refused_storm} refused_metric_node0={refused_metric} back_after_ms={}",
        acked.len(),
        back_after.as_millis()
    );

    assert!(
        back,
        "every client back and synced within {BACK_BOUND:?} of SIGTERM"
    );
    assert!(
        logs.iter()
            .all(|l| lock(l).closes.first() == Some(&Some(1012))),
        "the drain closed every socket with 1012"
    );
    assert!(
        acked_before > 0 && acked.len() > acked_before,
        "messages flowed through the storm"
    );
    assert!(refused_storm > 0, "the storm met the admission limit");
    assert!(
        refused_metric >= refused_storm as f64,
        "node 0 counted its refusals"
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged messages never received: {lost:?}",
        lost.len()
    );
    assert!(
        doubled.is_empty(),
        "received under another or a second id: {doubled:?}"
    );
    assert_eq!(stored_twice, 0, "every message stored once");
}
