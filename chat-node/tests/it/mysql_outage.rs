//! MySQL dies in the middle of write batches: every message is answered in time (an
//! acknowledgement or `unavailable`), nothing acknowledged is lost, and the nodes recover
//! by themselves once MySQL is back. The test runs its own MariaDB (see `mariadb.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::harness::{Cluster, WsReader, WsSender};
use crate::mariadb::MariaDb;

const USERS: usize = 6;
const SEND_EVERY: Duration = Duration::from_millis(25);
/// Traffic before MySQL is killed, and after.
const BEFORE_KILL: Duration = Duration::from_millis(1500);
const DURING_OUTAGE: Duration = Duration::from_millis(2000);
/// Every message is answered within this of being sent.
const ANSWER_BOUND: Duration = Duration::from_secs(15);
/// A node takes a message again within this of MySQL's restart.
const RECOVERY_BOUND: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Send,
    Quiet,
    Done,
}

/// What one user's socket sent and what came back for it.
#[derive(Default)]
struct Log {
    sent: Vec<(String, Instant)>,
    /// clientId → (id, when) of every acknowledgement, repeats included.
    acks: HashMap<String, Vec<(i64, Instant)>>,
    unavailable: HashMap<String, Vec<Instant>>,
    other: Vec<Value>,
}

impl Log {
    fn record(&mut self, me: &str, frame: &Value) {
        let now = Instant::now();
        match frame["type"].as_str() {
            Some("chatMessage") if frame["message"]["from"] == me => {
                let m = &frame["message"];
                let cid = m["clientId"].as_str().unwrap_or("").to_owned();
                let id = m["id"].as_i64().expect("numeric id");
                self.acks.entry(cid).or_default().push((id, now));
            }
            Some("chatMessage" | "presence" | "updateUsers" | "rooms") => {}
            Some("error") if frame["code"] == "unavailable" && frame["ref"].is_string() => {
                let cid = frame["ref"].as_str().unwrap_or("").to_owned();
                self.unavailable.entry(cid).or_default().push(now);
            }
            _ => self.other.push(frame.clone()),
        }
    }

    fn answered(&self, cid: &str) -> usize {
        self.acks.get(cid).map_or(0, Vec::len) + self.unavailable.get(cid).map_or(0, Vec::len)
    }
}

async fn run_user(
    i: usize,
    me: String,
    peer: String,
    mut tx: WsSender,
    mut rx: WsReader,
    log: Arc<Mutex<Log>>,
    mut phase: watch::Receiver<Phase>,
) -> (WsSender, WsReader) {
    let mut tick = tokio::time::interval(SEND_EVERY);
    let mut k = 0;
    loop {
        let now = *phase.borrow_and_update();
        if now == Phase::Done {
            return (tx, rx);
        }
        tokio::select! {
            _ = tick.tick(), if now == Phase::Send => {
                k += 1;
                let cid = format!("u{i}-{k}");
                let frame = json!({
                    "type": "chatMessage", "peer": peer, "text": format!("m{k}"), "clientId": cid,
                });
                log.lock().unwrap().sent.push((cid, Instant::now()));
                assert!(tx.send(frame).await, "user {i}: socket gone");
            }
            frame = rx.try_next(Duration::from_millis(100)) => match frame {
                None => {}
                Some(Value::Null) => panic!("user {i}: the node closed the socket"),
                Some(frame) => log.lock().unwrap().record(&me, &frame),
            },
            _ = phase.changed() => {}
        }
    }
}

/// Sends `cid` until it is acknowledged (an `unavailable` answer is retried after a
/// pause), before `deadline`; returns the acknowledged id.
async fn send_until_acked(
    tx: &mut WsSender,
    rx: &mut WsReader,
    me: &str,
    peer: &str,
    cid: &str,
    deadline: Instant,
) -> Option<i64> {
    while Instant::now() < deadline {
        let frame = json!({"type": "chatMessage", "peer": peer, "text": "again", "clientId": cid});
        assert!(tx.send(frame).await, "socket gone");
        let answer_by = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            let left = answer_by.saturating_duration_since(tokio::time::Instant::now());
            match rx.try_next(left).await {
                None => break,
                Some(Value::Null) => panic!("{me}: the node closed the socket"),
                Some(f) if f["type"] == "chatMessage" && f["message"]["from"] == me => {
                    if f["message"]["clientId"] == cid {
                        return f["message"]["id"].as_i64();
                    }
                }
                Some(f) if f["type"] == "error" => {
                    assert_eq!(f["code"], "unavailable", "{me}: {f}");
                    if f["ref"] == cid {
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        break;
                    }
                }
                Some(_) => {}
            }
        }
    }
    None
}

async fn ready(c: &Cluster, i: usize) -> (u16, Value) {
    match c.http.get(format!("{}/readyz", c.url(i))).send().await {
        Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
        Err(_) => (0, Value::Null),
    }
}

#[derive(QueryableByName)]
struct Stored {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    username: String,
    #[diesel(sql_type = Text)]
    client_id: String,
}

/// (sender's username, clientId) → ids of the stored messages.
async fn stored_by_client_id(c: &Cluster) -> HashMap<(String, String), Vec<i64>> {
    let mut conn = c.db().await;
    let rows: Vec<Stored> = diesel::sql_query(
        "SELECT m.id, u.username, m.client_id FROM messages m JOIN users u ON u.id = m.sender_id",
    )
    .load(&mut conn)
    .await
    .expect("stored messages");
    let mut stored: HashMap<(String, String), Vec<i64>> = HashMap::new();
    for r in rows {
        stored
            .entry((r.username, r.client_id))
            .or_default()
            .push(r.id);
    }
    stored
}

#[tokio::test]
async fn mysql_killed_under_traffic_every_message_is_answered_and_nodes_recover() {
    // Declared first, so it outlives the cluster (which drops its database on it).
    let mut mysql = MariaDb::start().await;
    let c = Cluster::start_on(
        2,
        &[("CHAT_WS_RATE", "1000"), ("CHAT_WS_BURST", "1000")],
        &mysql.base_url(),
    )
    .await;
    let mut users = Vec::new();
    for i in 0..USERS {
        users.push(c.login_new(i % 2, &format!("u{i}")).await);
    }
    let names: Vec<String> = users.iter().map(|u| u.username.clone()).collect();
    let (phase_tx, phase_rx) = watch::channel(Phase::Send);
    let logs: Vec<Arc<Mutex<Log>>> = (0..USERS).map(|_| Arc::default()).collect();
    let mut tasks = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let (tx, rx) = u.ws().await.split();
        tasks.push(tokio::spawn(run_user(
            i,
            names[i].clone(),
            names[(i + 1) % USERS].clone(),
            tx,
            rx,
            logs[i].clone(),
            phase_rx.clone(),
        )));
    }

    tokio::time::sleep(BEFORE_KILL).await;
    let killed_at = Instant::now();
    mysql.kill();
    tokio::time::sleep(DURING_OUTAGE).await;
    phase_tx.send(Phase::Quiet).unwrap();
    let stopped_at = Instant::now();

    // Every message is answered, once, within the bound.
    let all_answered = || {
        logs.iter().all(|l| {
            let l = l.lock().unwrap();
            l.sent.iter().all(|(cid, _)| l.answered(cid) > 0)
        })
    };
    while !all_answered() && stopped_at.elapsed() < ANSWER_BOUND + Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Readiness tells the outage.
    for i in 0..2 {
        let (status, body) = ready(&c, i).await;
        assert_eq!(status, 503, "node {i} ready without MySQL: {body}");
        assert_eq!(body["mysql"], false, "node {i}: {body}");
        assert_eq!(body["redis"], true, "node {i}: {body}");
    }
    let (mut sent, mut acked_before_kill, mut unavailable) = (0, 0, 0);
    let mut slowest = Duration::ZERO;
    for (i, log) in logs.iter().enumerate() {
        let l = log.lock().unwrap();
        assert!(
            l.other.is_empty(),
            "user {i}: unexpected frames {:?}",
            l.other
        );
        for (cid, at) in &l.sent {
            let answers: Vec<Instant> = l
                .acks
                .get(cid)
                .into_iter()
                .flatten()
                .map(|(_, t)| *t)
                .chain(l.unavailable.get(cid).into_iter().flatten().copied())
                .collect();
            assert_eq!(
                answers.len(),
                1,
                "user {i}: {cid} sent {:?} after the kill, answered {} times",
                at.saturating_duration_since(killed_at),
                answers.len()
            );
            let took = answers[0].duration_since(*at);
            slowest = slowest.max(took);
            assert!(
                took <= ANSWER_BOUND,
                "user {i}: {cid} answered after {took:?}"
            );
            if l.acks.contains_key(cid) && answers[0] < killed_at {
                acked_before_kill += 1;
            }
        }
        sent += l.sent.len();
        unavailable += l.unavailable.len();
    }
    assert!(acked_before_kill > 0, "traffic flowed before the kill");
    assert!(unavailable > 0, "the outage was seen by senders");

    // MySQL comes back on the same data and port; every node takes messages again.
    mysql.restart().await;
    let restarted_at = Instant::now();
    phase_tx.send(Phase::Done).unwrap();
    let mut halves = Vec::new();
    for t in tasks {
        halves.push(t.await.expect("user task"));
    }
    let deadline = restarted_at + RECOVERY_BOUND;
    let mut probes: Vec<Option<i64>> = Vec::new();
    for (i, (tx, rx)) in halves.iter_mut().enumerate() {
        let next = &names[(i + 1) % USERS];
        let probe = format!("probe-{i}");
        let id = send_until_acked(tx, rx, &names[i], next, &probe, deadline).await;
        assert!(
            id.is_some(),
            "user {i} on node {}: no message taken within {RECOVERY_BOUND:?} of the restart",
            i % 2
        );
        probes.push(id);
    }
    let recovered_after = restarted_at.elapsed();

    // Nothing acknowledged was lost: each acknowledged clientId is stored once, under the
    // id of its acknowledgement; and nothing is stored that was not sent.
    let stored = stored_by_client_id(&c).await;
    let mut committed_but_unavailable = 0;
    let mut retries = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        let l = log.lock().unwrap();
        for (cid, acks) in &l.acks {
            let ids = stored.get(&(names[i].clone(), cid.clone()));
            assert_eq!(
                ids,
                Some(&vec![acks[0].0]),
                "user {i}: acknowledged {cid} stored as {ids:?}"
            );
        }
        for cid in l.unavailable.keys() {
            if stored.contains_key(&(names[i].clone(), cid.clone())) {
                committed_but_unavailable += 1;
            }
            retries.push((i, cid.clone()));
        }
    }
    for ((name, cid), ids) in &stored {
        let i = names.iter().position(|n| n == name).expect("a test user");
        let sent = logs[i].lock().unwrap().sent.iter().any(|(c, _)| c == cid);
        assert!(
            sent || *cid == format!("probe-{i}"),
            "user {i}: {cid} stored as {ids:?} but never sent"
        );
    }

    // What was answered `unavailable` is sent again with its clientId, as a client does:
    // each is then acknowledged and stored once, whether or not its first commit landed.
    let mut retried = Vec::new();
    for (i, cid) in retries {
        let (tx, rx) = &mut halves[i];
        let next = &names[(i + 1) % USERS];
        let by = Instant::now() + Duration::from_secs(10);
        let id = send_until_acked(tx, rx, &names[i], next, &cid, by).await;
        let id = id.unwrap_or_else(|| panic!("user {i}: the retry of {cid} is acknowledged"));
        retried.push((i, cid, id));
    }
    let stored = stored_by_client_id(&c).await;
    for (i, cid, id) in &retried {
        assert_eq!(
            stored.get(&(names[*i].clone(), cid.clone())),
            Some(&vec![*id]),
            "user {i}: retried {cid}"
        );
    }
    for (i, id) in probes.iter().enumerate() {
        let key = (names[i].clone(), format!("probe-{i}"));
        assert_eq!(stored.get(&key), id.map(|id| vec![id]).as_ref());
    }
    eprintln!(
        "mysql outage: {sent} sent, {acked_before_kill} acked before the kill, \
         {unavailable} unavailable ({committed_but_unavailable} of them committed anyway, \
         {} retried), slowest answer {slowest:?}, all nodes took messages {recovered_after:?} after the restart",
        retried.len()
    );
    for (tx, _) in halves {
        tx.close().await;
    }
}

/// After MySQL restarts, what goes through the node's connection pool (readiness, login,
/// `sync`, a new socket's directory) works again within the bound, not only the writer,
/// which keeps a connection of its own.
#[tokio::test]
async fn pooled_queries_recover_after_mysql_restarts() {
    let mut mysql = MariaDb::start().await;
    let c = Cluster::start_on(1, &[], &mysql.base_url()).await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(0, "bob").await;
    let mut a = alice.ws().await;
    let seen = a.send_acked(&bob.username, "before").await;
    a.send(json!({"type": "sync", "after": 0})).await;
    assert_eq!(a.expect_type("sync").await["messages"][0], seen);

    mysql.kill();
    // Readiness comes from a check the node runs every second.
    let mut last = ready(&c, 0).await;
    let noticed_by = Instant::now() + Duration::from_secs(5);
    while last.0 != 503 && Instant::now() < noticed_by {
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = ready(&c, 0).await;
    }
    assert_eq!(last.0, 503, "ready without MySQL: {}", last.1);
    mysql.restart().await;
    let restarted_at = Instant::now();
    let deadline = restarted_at + RECOVERY_BOUND;

    let mut last = (0, Value::Null);
    while Instant::now() < deadline {
        last = ready(&c, 0).await;
        if last.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        last.0, 200,
        "not ready {RECOVERY_BOUND:?} after MySQL restarted: {}",
        last.1
    );
    let synced = loop {
        a.send(json!({"type": "sync", "after": 0})).await;
        let f = loop {
            let f = a.next().await;
            assert!(!f.is_null(), "the socket closed");
            if f["type"] == "sync" || f["type"] == "error" {
                break f;
            }
        };
        if f["type"] == "sync" {
            break f;
        }
        assert!(Instant::now() < deadline, "sync still fails: {f}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(synced["messages"][0], seen);
    let r = alice.login(&alice.username, crate::harness::PASSWORD).await;
    assert_eq!(r.status(), 200, "login after the restart");
    let mut b = bob.ws().await;
    b.send(json!({"type": "sync", "after": 0})).await;
    assert_eq!(b.expect_type("sync").await["messages"][0], seen);
    eprintln!(
        "pool recovered {:?} after the restart",
        restarted_at.elapsed()
    );
}
