//! The group-commit writer (storage/writer.rs): many concurrent senders over two nodes,
//! with batches forced to one message and allowed up to 128; and one batch driven by hand
//! that mixes new messages, duplicates and a reused clientId.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_node::storage::users::User as DbUser;
use chat_node::storage::writer::{
    Committed, Deliver, NewMessage, Recipient, Stored, WriteError, Writer, WriterConfig,
    WriterMetrics,
};
use chat_node::storage::{ensure_database, run_migrations, Db};
use chrono::{NaiveDate, NaiveDateTime};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};
use futures_util::FutureExt;
use prometheus::{Histogram, HistogramOpts};
use serde_json::{json, Value};
use tokio::sync::{Barrier, Notify};

use crate::harness::{random, Cluster, WsReader, SHARED_DB_BASE};

const USERS: usize = 8;
/// Messages each user sends, alternately to the next user and the one after.
const PER_USER: usize = 40;
/// Frames each socket should see: its own acknowledgements and what two peers send it.
const PER_SOCKET: usize = 2 * PER_USER;
/// Small enough that every sync of the test spans several pages.
const SYNC_PAGE: usize = 7;

#[derive(QueryableByName, Debug, Clone)]
struct Row {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    channel_id: i64,
    #[diesel(sql_type = BigInt)]
    sender_id: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    recipient_id: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    client_id: Option<String>,
}

async fn all_rows(conn: &mut AsyncMysqlConnection) -> Vec<Row> {
    diesel::sql_query(
        "SELECT id, channel_id, sender_id, recipient_id, client_id FROM messages ORDER BY id",
    )
    .load(conn)
    .await
    .expect("messages")
}

#[derive(QueryableByName)]
struct UserRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    username: String,
}

/// One series' value in a Prometheus text page (0 when absent).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn peer_of(i: usize, k: usize) -> usize {
    (i + 1 + k % 2) % USERS
}

fn cid(i: usize, k: usize) -> String {
    format!("u{i}-{k}")
}

fn id_of(message: &Value) -> i64 {
    message["id"].as_i64().expect("numeric id")
}

/// Reads `PER_SOCKET` chat messages (or until the deadline), then a quiet spell more so a
/// duplicate delivery would be seen. Returns the messages in arrival order and any
/// `error` frames.
async fn read_live(mut reader: WsReader) -> (Vec<Value>, Vec<Value>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut messages = Vec::new();
    let mut errors = Vec::new();
    loop {
        let wait = if messages.len() >= PER_SOCKET {
            Duration::from_millis(400)
        } else {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        };
        match reader.try_next(wait).await {
            None => break,
            Some(Value::Null) => panic!("a socket closed during the test"),
            Some(frame) if frame["type"] == "chatMessage" => {
                messages.push(frame["message"].clone());
            }
            Some(frame) if frame["type"] == "error" => errors.push(frame),
            Some(_) => {}
        }
    }
    (messages, errors)
}

/// Pages through `sync` after `after`; checks the paging and returns every message.
async fn sync_all(ws: &mut crate::harness::Ws, after: i64) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut cursor = after;
    for _ in 0..1000 {
        ws.send(json!({"type": "sync", "after": cursor, "limit": SYNC_PAGE}))
            .await;
        let page = ws.expect_type("sync").await;
        let messages = page["messages"].as_array().expect("messages").clone();
        let more = page["hasMore"].as_bool().expect("hasMore");
        assert!(messages.len() <= SYNC_PAGE, "page over the limit: {page}");
        if more {
            assert_eq!(messages.len(), SYNC_PAGE, "a short page with hasMore");
        }
        let ids: Vec<i64> = messages.iter().map(id_of).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]) && ids.iter().all(|id| *id > cursor),
            "a page is ascending and after its cursor {cursor}: {ids:?}"
        );
        out.extend(messages);
        if !more {
            return out;
        }
        cursor = ids.last().copied().expect("a full page has a last id");
    }
    panic!("sync did not end");
}

/// Eight users on two nodes, each sending 40 messages without waiting for
/// acknowledgements; then every delivery, every stored row and `sync` from several cut
/// points are checked against the database.
async fn concurrent_senders(max_batch: &str) -> Run {
    let c = Cluster::start_with(
        2,
        &[
            ("CHAT_WS_RATE", "1000"),
            ("CHAT_WS_BURST", "1000"),
            ("CHAT_WRITER_MAX_BATCH", max_batch),
        ],
    )
    .await;
    let mut users = Vec::new();
    for i in 0..USERS {
        users.push(c.login_new(i % 2, &format!("u{i}")).await);
    }
    let names: Vec<String> = users.iter().map(|u| u.username.clone()).collect();
    let mut sockets = Vec::new();
    for u in &users {
        sockets.push(u.ws().await);
    }

    let started = Instant::now();
    let barrier = Arc::new(Barrier::new(USERS));
    let mut tasks = Vec::new();
    for (i, ws) in sockets.into_iter().enumerate() {
        let (mut tx, rx) = ws.split();
        let names = names.clone();
        let barrier = barrier.clone();
        let reader = tokio::spawn(read_live(rx));
        let sender = tokio::spawn(async move {
            barrier.wait().await;
            for k in 0..PER_USER {
                let frame = json!({
                    "type": "chatMessage",
                    "peer": names[peer_of(i, k)],
                    "text": format!("message {k} from {i}"),
                    "clientId": cid(i, k),
                });
                assert!(tx.send(frame).await, "send {i}/{k}");
            }
            tx
        });
        tasks.push((sender, reader));
    }
    let mut live = Vec::new();
    let mut senders = Vec::new();
    for (sender, reader) in tasks {
        senders.push(sender.await.expect("sender task"));
        live.push(reader.await.expect("reader task"));
    }
    let traffic = started.elapsed();

    // The database's truth.
    let mut conn = c.db().await;
    let user_rows: Vec<UserRow> = diesel::sql_query("SELECT id, username FROM users")
        .load(&mut conn)
        .await
        .expect("users");
    let uid: HashMap<String, i64> = user_rows.into_iter().map(|u| (u.username, u.id)).collect();
    let ids: Vec<i64> = names.iter().map(|n| uid[n]).collect();
    let rows = all_rows(&mut conn).await;
    assert_eq!(
        rows.len(),
        USERS * PER_USER,
        "every message stored, none twice"
    );
    let mut by_cid: HashMap<(i64, String), Vec<&Row>> = HashMap::new();
    for r in &rows {
        let cid = r.client_id.clone().expect("every message had a clientId");
        by_cid.entry((r.sender_id, cid)).or_default().push(r);
    }

    for (i, (messages, errors)) in live.iter().enumerate() {
        assert!(errors.is_empty(), "user {i} got errors: {errors:?}");
        let me = names[i].as_str();

        // Every message sent is acknowledged exactly once, and stored exactly once, under
        // the id of the acknowledgement, in the right conversation.
        let mut acks: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
        for m in messages.iter().filter(|m| m["from"] == me) {
            let cid = m["clientId"]
                .as_str()
                .expect("own messages carry a clientId");
            acks.entry(cid.to_owned()).or_default().push(m);
        }
        assert_eq!(acks.len(), PER_USER, "user {i}: one ack per message");
        let mut last_id_to: HashMap<usize, i64> = HashMap::new();
        for k in 0..PER_USER {
            let cid = cid(i, k);
            let got = acks.get(&cid).map_or(0, Vec::len);
            assert_eq!(got, 1, "user {i}: {cid} acknowledged {got} times");
            let ack = acks[&cid][0];
            let peer = peer_of(i, k);
            assert_eq!(ack["to"], names[peer].as_str());
            assert_eq!(ack["text"], format!("message {k} from {i}").as_str());
            let stored = by_cid
                .get(&(ids[i], cid.clone()))
                .map_or(&[][..], Vec::as_slice);
            assert_eq!(stored.len(), 1, "{cid} stored {} times", stored.len());
            assert_eq!(stored[0].id, id_of(ack), "{cid}: acked id is the stored id");
            assert_eq!(stored[0].recipient_id, Some(ids[peer]));
            assert_eq!(stored[0].channel_id, ack["channel"].as_i64().unwrap());
            // In one conversation, one sender's ids grow in send order.
            if let Some(before) = last_id_to.insert(peer, id_of(ack)) {
                assert!(
                    id_of(ack) > before,
                    "user {i} to {peer}: {cid} got id {} after {before}",
                    id_of(ack)
                );
            }
        }

        // The socket saw each of the user's messages exactly once, and one sender's
        // messages in the order of their ids.
        let live_ids: Vec<i64> = messages.iter().map(id_of).collect();
        let live_set: BTreeSet<i64> = live_ids.iter().copied().collect();
        assert_eq!(
            live_set.len(),
            live_ids.len(),
            "user {i}: a message delivered twice"
        );
        let mine: BTreeSet<i64> = rows
            .iter()
            .filter(|r| r.sender_id == ids[i] || r.recipient_id == Some(ids[i]))
            .map(|r| r.id)
            .collect();
        assert_eq!(mine.len(), PER_SOCKET);
        assert_eq!(
            live_set, mine,
            "user {i}: live deliveries are the stored truth"
        );
        let mut last_from: HashMap<&str, i64> = HashMap::new();
        for m in messages {
            let from = m["from"].as_str().expect("from");
            if let Some(before) = last_from.insert(from, id_of(m)) {
                assert!(
                    id_of(m) > before,
                    "user {i}: from {from}, id {} arrived after {before}",
                    id_of(m)
                );
            }
        }
    }

    // Sync exactness: from what a client had seen at several points, `sync` returns
    // exactly the user's messages past the largest id seen, each once, as delivered.
    let mut out_of_order = 0;
    for (i, (messages, _)) in live.iter().enumerate() {
        let mine: BTreeSet<i64> = rows
            .iter()
            .filter(|r| r.sender_id == ids[i] || r.recipient_id == Some(ids[i]))
            .map(|r| r.id)
            .collect();
        let by_id: HashMap<i64, &Value> = messages.iter().map(|m| (id_of(m), m)).collect();
        // A delivery below the largest id the socket had already seen: a client that
        // dropped just before it, and synced after that largest id as docs/protocol.md
        // says, would never get it.
        let mut highest = 0;
        for m in messages {
            if id_of(m) < highest {
                out_of_order += 1;
            }
            highest = highest.max(id_of(m));
        }
        let mut ws = users[i].ws_at(&c.url(1 - i % 2)).await;
        for seen in [
            0,
            PER_SOCKET / 4,
            PER_SOCKET / 2,
            3 * PER_SOCKET / 4,
            PER_SOCKET,
        ] {
            let cut = messages[..seen].iter().map(id_of).max().unwrap_or(0);
            let synced = sync_all(&mut ws, cut).await;
            let got: Vec<i64> = synced.iter().map(id_of).collect();
            let got_set: BTreeSet<i64> = got.iter().copied().collect();
            assert_eq!(
                got_set.len(),
                got.len(),
                "user {i}: sync repeated a message"
            );
            let want: BTreeSet<i64> = mine.range(cut + 1..).copied().collect();
            assert_eq!(got_set, want, "user {i}: sync after {cut} (seen {seen})");
            for m in &synced {
                assert_eq!(
                    Some(&m),
                    by_id.get(&id_of(m)),
                    "user {i}: sync and live delivery differ"
                );
            }
        }
        ws.close().await;
    }

    let mut sum = 0.0;
    let mut count = 0.0;
    for i in 0..2 {
        let text = c
            .http
            .get(c.nodes[i].metrics_url())
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        sum += metric(&text, "chat_writer_batch_size_sum");
        count += metric(&text, "chat_writer_batch_size_count");
    }
    eprintln!(
        "max_batch {max_batch}: {} messages in {traffic:?}, {count} batches (mean {:.2}), \
         {out_of_order} deliveries arrived after a larger id had reached the same socket",
        USERS * PER_USER,
        sum / count.max(1.0)
    );
    for tx in senders {
        tx.close().await;
    }
    Run {
        batched: sum,
        batches: count,
        out_of_order,
    }
}

/// Batch sizes summed over both nodes, and deliveries that came after a larger id.
struct Run {
    batched: f64,
    batches: f64,
    out_of_order: usize,
}

#[tokio::test]
async fn concurrent_senders_over_two_nodes_with_batches_of_one() {
    let run = concurrent_senders("1").await;
    assert_eq!(
        run.batched,
        (USERS * PER_USER) as f64,
        "every message went to a writer once"
    );
    assert_eq!(
        run.batches, run.batched,
        "max batch 1: every batch held one message"
    );
}

#[tokio::test]
async fn concurrent_senders_over_two_nodes_with_batches_of_up_to_128() {
    let run = concurrent_senders("128").await;
    let (sum, count) = (run.batched, run.batches);
    assert_eq!(
        sum,
        (USERS * PER_USER) as f64,
        "every message went to a writer once"
    );
    assert!(
        sum / count > 1.0,
        "no batch held more than one message: {sum} messages in {count} batches"
    );
}

/// The user lock is released at COMMIT, before the batch is published; a message of the
/// same user committed next on the other node can be published first. So a socket may
/// see id X before a smaller id Y, and a client that drops in between and syncs after X
/// (docs/protocol.md, "Reconnecting") never gets Y.
#[tokio::test]
async fn deliveries_to_a_socket_arrive_in_id_order() {
    let run = concurrent_senders("128").await;
    assert_eq!(run.out_of_order, 0, "deliveries below an id already seen");
}

/// A fresh database on the shared server, dropped at the end.
struct FreshDb {
    name: String,
    url: String,
}

impl FreshDb {
    async fn create() -> Self {
        let name = format!("chat_test_{}", random(10));
        let url = format!("{SHARED_DB_BASE}/{name}");
        ensure_database(&url).await.expect("create database");
        run_migrations(&url).await.expect("migrations");
        Self { name, url }
    }

    async fn conn(&self) -> AsyncMysqlConnection {
        AsyncMysqlConnection::establish(&self.url)
            .await
            .expect("database connection")
    }
}

impl Drop for FreshDb {
    fn drop(&mut self) {
        let _ = std::process::Command::new("mariadb")
            .args(["-uroot", "-h127.0.0.1", "-e"])
            .arg(format!("DROP DATABASE IF EXISTS `{}`", self.name))
            .status();
    }
}

fn histogram(name: &str) -> Histogram {
    Histogram::with_opts(
        HistogramOpts::new(name, name).buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
    )
    .expect("histogram")
}

/// Three users and their conversations, with one message (clientId "old") from A to B
/// already stored.
struct Scene {
    db: FreshDb,
    a: DbUser,
    b: DbUser,
    c: DbUser,
    ab: i64,
    ac: i64,
    old_id: i64,
    old_sent_at: NaiveDateTime,
}

impl Scene {
    async fn new() -> Self {
        let db = FreshDb::create().await;
        let pool = Db::new(&db.url, 2, histogram("pool_wait")).expect("pool");
        let tag = random(4);
        let mut users = Vec::new();
        for name in ["a", "b", "c"] {
            users.push(
                pool.create_user(&format!("{name}_{tag}"), "not-a-hash")
                    .await
                    .expect("user"),
            );
        }
        let [a, b, c] = <[DbUser; 3]>::try_from(users).expect("three users");
        let ab = pool.channel_between(a.id, b.id).await.expect("channel ab");
        let ac = pool.channel_between(a.id, c.id).await.expect("channel ac");
        let old_sent_at = NaiveDate::from_ymd_opt(2026, 1, 2)
            .and_then(|d| d.and_hms_micro_opt(3, 4, 5, 123_456))
            .expect("a date");
        let mut conn = db.conn().await;
        diesel::sql_query(
            "INSERT INTO messages (channel_id, sender_id, recipient_id, client_id, body, sent_at) \
             VALUES (?, ?, ?, 'old', 'the original text', '2026-01-02 03:04:05.123456')",
        )
        .bind::<BigInt, _>(ab)
        .bind::<BigInt, _>(a.id)
        .bind::<BigInt, _>(b.id)
        .execute(&mut conn)
        .await
        .expect("the old message");
        let old_id = all_rows(&mut conn).await[0].id;
        Self {
            db,
            a,
            b,
            c,
            ab,
            ac,
            old_id,
            old_sent_at,
        }
    }

    fn message(&self, from: &DbUser, to: &DbUser, cid: Option<&str>, text: &str) -> NewMessage {
        let channel_id = if [from.id, to.id].contains(&self.c.id) {
            self.ac
        } else {
            self.ab
        };
        NewMessage {
            sender: from.clone(),
            to: Recipient::User(to.clone()),
            channel_id,
            client_id: cid.map(str::to_owned),
            text: text.to_owned(),
        }
    }
}

/// A writer whose first delivery waits until `release` is notified, so that what is
/// enqueued meanwhile is taken as one batch. `entered` is notified when that first
/// delivery starts; `delivered` lists every batch handed to delivery.
struct PluggedWriter {
    writer: Writer,
    entered: Arc<Notify>,
    release: Arc<Notify>,
    delivered: Arc<Mutex<Vec<Vec<Committed>>>>,
    metrics: WriterMetrics,
}

impl PluggedWriter {
    fn start(url: &str) -> Self {
        let entered = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let delivered: Arc<Mutex<Vec<Vec<Committed>>>> = Arc::default();
        let deliver: Deliver = {
            let (entered, release, delivered) =
                (entered.clone(), release.clone(), delivered.clone());
            Arc::new(move |batch: Vec<Committed>| {
                let first = {
                    let mut d = delivered.lock().unwrap();
                    d.push(batch);
                    d.len() == 1
                };
                let (entered, release) = (entered.clone(), release.clone());
                async move {
                    if first {
                        entered.notify_one();
                        release.notified().await;
                    }
                    true
                }
                .boxed()
            })
        };
        let metrics = WriterMetrics {
            batch_size: histogram("batch_size"),
            batch_seconds: histogram("batch_seconds"),
        };
        let writer = Writer::start(
            url,
            WriterConfig {
                max_batch: 128,
                queue: 64,
            },
            deliver,
            metrics.clone(),
        )
        .expect("writer");
        Self {
            writer,
            entered,
            release,
            delivered,
            metrics,
        }
    }

    /// Writes a plug message and waits until the writer is stuck delivering it; then
    /// enqueues `messages` one by one, in order, and releases the plug. Returns the
    /// plug's result and the others', in the order given.
    async fn one_batch(
        &self,
        plug: NewMessage,
        messages: Vec<NewMessage>,
    ) -> (Result<Stored, WriteError>, Vec<Result<Stored, WriteError>>) {
        let w = self.writer.clone();
        let plug = tokio::spawn(async move { w.write(plug).await });
        tokio::time::timeout(Duration::from_secs(10), self.entered.notified())
            .await
            .expect("the plug reaches delivery");
        let mut pending = Vec::new();
        for m in messages {
            let w = self.writer.clone();
            pending.push(tokio::spawn(async move { w.write(m).await }));
            // Each write is in the queue before the next is spawned, so the order holds.
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!plug.is_finished(), "the plug is held in delivery");
        assert!(
            pending.iter().all(|p| !p.is_finished()),
            "nothing is answered while the writer is stuck"
        );
        assert_eq!(self.metrics.batch_size.get_sample_count(), 1);
        self.release.notify_one();
        let plug = tokio::time::timeout(Duration::from_secs(10), plug)
            .await
            .expect("the plug is answered")
            .expect("plug task");
        (plug, answers(pending).await)
    }
}

/// Each write's answer, in the order given; every one within 10 s.
async fn answers(
    writes: Vec<tokio::task::JoinHandle<Result<Stored, WriteError>>>,
) -> Vec<Result<Stored, WriteError>> {
    let mut results = Vec::new();
    for write in writes {
        results.push(
            tokio::time::timeout(Duration::from_secs(10), write)
                .await
                .expect("every write is answered")
                .expect("write task"),
        );
    }
    results
}

/// Batches written so far and the messages in them.
fn batches(metrics: &WriterMetrics) -> (u64, f64) {
    (
        metrics.batch_size.get_sample_count(),
        metrics.batch_size.get_sample_sum(),
    )
}

fn new_message(result: &Result<Stored, WriteError>) -> &chat_common::protocol::ChatMessage {
    match result {
        Ok(Stored::New(message)) => message,
        other => panic!("expected a new, published message: {other:?}"),
    }
}

#[tokio::test]
async fn one_batch_with_duplicates_and_a_reused_client_id() {
    let s = Scene::new().await;
    let w = PluggedWriter::start(&s.db.url);
    let (plug, results) = w
        .one_batch(
            s.message(&s.a, &s.b, Some("plug"), "plug"),
            vec![
                s.message(&s.a, &s.b, Some("g1"), "good one"),
                s.message(&s.a, &s.b, Some("old"), "a retry of the old one"),
                s.message(&s.a, &s.b, Some("g1"), "good one, again"),
                s.message(&s.a, &s.c, Some("old"), "old, in another conversation"),
                s.message(&s.b, &s.a, None, "good two"),
            ],
        )
        .await;
    let [g1, old, g1_again, reused, good2] =
        <[Result<Stored, WriteError>; 5]>::try_from(results).expect("five results");

    // The batch really was one: the plug's, then five.
    assert_eq!(w.metrics.batch_size.get_sample_count(), 2);
    assert_eq!(w.metrics.batch_size.get_sample_sum(), 6.0);
    assert_eq!(w.metrics.batch_seconds.get_sample_count(), 2);

    let plug = new_message(&plug).clone();

    // The in-batch duplicate: one is new, the other acknowledges it again.
    let (first, again) = match (&g1, &g1_again) {
        (Ok(Stored::New(message)), Ok(Stored::Duplicate(d)))
        | (Ok(Stored::Duplicate(d)), Ok(Stored::New(message))) => (message, d),
        other => panic!("one new and one duplicate for g1: {other:?}"),
    };
    assert_eq!(again.id, first.id, "the duplicate carries the original id");
    assert_eq!(again.text, first.text);
    assert_eq!(again.client_id.as_deref(), Some("g1"));
    assert_eq!(first.channel, s.ab as u64);

    // The duplicate of a stored message answers with the stored original.
    match &old {
        Ok(Stored::Duplicate(m)) => {
            assert_eq!(i64::from(m.id), s.old_id);
            assert_eq!(m.text, "the original text");
            assert_eq!(m.sent_at.naive_utc(), s.old_sent_at);
            assert_eq!(m.channel, s.ab as u64);
            assert_eq!(
                (m.from.as_str(), m.to.as_deref().unwrap_or_default()),
                (&*s.a.username, &*s.b.username)
            );
            assert_eq!(m.client_id.as_deref(), Some("old"));
        }
        other => panic!("expected the stored original: {other:?}"),
    }
    assert!(
        matches!(reused, Err(WriteError::ClientIdReused)),
        "a clientId of another conversation: {reused:?}"
    );
    let good2 = new_message(&good2);
    assert_eq!(good2.client_id, None);
    assert_eq!(
        (good2.from.as_str(), good2.to.as_deref().unwrap_or_default()),
        (&*s.b.username, &*s.a.username)
    );
    assert!(
        plug.id < first.id && first.id < good2.id,
        "ids in queue order"
    );

    // Delivery saw the plug, then the stored original published again (so a recipient
    // that missed it gets it when its sender retries) and the batch's two new messages,
    // in id order; the in-batch repeat is not published twice.
    let delivered: Vec<Vec<i64>> = w
        .delivered
        .lock()
        .unwrap()
        .iter()
        .map(|b| b.iter().map(|c| i64::from(c.message.id)).collect())
        .collect();
    assert_eq!(
        delivered,
        vec![
            vec![i64::from(plug.id)],
            vec![s.old_id, i64::from(first.id), i64::from(good2.id)]
        ]
    );

    // Stored: the old one, the plug, g1 once, good two. Nothing of the reuse.
    let mut conn = s.db.conn().await;
    let rows = all_rows(&mut conn).await;
    let summary: Vec<(i64, i64, Option<&str>)> = rows
        .iter()
        .map(|r| (r.id, r.sender_id, r.client_id.as_deref()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (s.old_id, s.a.id, Some("old")),
            (i64::from(plug.id), s.a.id, Some("plug")),
            (i64::from(first.id), s.a.id, Some("g1")),
            (i64::from(good2.id), s.b.id, None),
        ]
    );
    assert_eq!(rows[3].recipient_id, Some(s.a.id));
    assert_eq!(rows[3].channel_id, s.ab);
}

/// The `client_id` column's collation (utf8mb4_bin) pads with spaces, so the unique key
/// takes "old " for "old" while the writer's lookup, matching in Rust, does not: the
/// INSERT hits the unique key and the whole batch fails, the innocent message with it.
#[tokio::test]
async fn a_client_id_with_trailing_spaces_does_not_fail_its_batch() {
    let s = Scene::new().await;
    let w = PluggedWriter::start(&s.db.url);
    let (_, results) = w
        .one_batch(
            s.message(&s.a, &s.b, Some("plug"), "plug"),
            vec![
                s.message(&s.b, &s.a, None, "an innocent bystander"),
                s.message(&s.a, &s.b, Some("old "), "old, with a trailing space"),
            ],
        )
        .await;
    assert_eq!(w.metrics.batch_size.get_sample_sum(), 3.0, "one batch");
    new_message(&results[0]);
    assert!(
        results[1].is_ok(),
        "stored or acknowledged as a duplicate: {:?}",
        results[1]
    );
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Sessions of this database waiting for a named lock.
async fn lock_waiters(conn: &mut AsyncMysqlConnection, db: &str) -> i64 {
    diesel::sql_query(
        "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST \
         WHERE DB = ? AND STATE = 'User lock'",
    )
    .bind::<Text, _>(db)
    .get_result::<Count>(conn)
    .await
    .expect("processlist")
    .n
}

async fn until_lock_waiters(conn: &mut AsyncMysqlConnection, db: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while lock_waiters(conn, db).await != n {
        assert!(Instant::now() < deadline, "never {n} waiting for the lock");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The writer reads a batch's `clientId`s before it takes the sequence lock. Here another
/// node (this test) takes the lock first and stores one of them in between: the batch's
/// INSERT hits the unique key, writes nothing, and the batch is planned again under the
/// lock, so the retry is answered with the stored row and its neighbour is still stored.
#[tokio::test]
async fn a_retry_stored_elsewhere_while_the_batch_waits_for_the_lock() {
    let s = Scene::new().await;
    let w = PluggedWriter::start(&s.db.url);
    let mut watcher = s.db.conn().await;

    // The writer holds the lock, stuck delivering the plug, while the batch is queued.
    let plug = {
        let (w, m) = (
            w.writer.clone(),
            s.message(&s.a, &s.b, Some("plug"), "plug"),
        );
        tokio::spawn(async move { w.write(m).await })
    };
    tokio::time::timeout(Duration::from_secs(10), w.entered.notified())
        .await
        .expect("the plug reaches delivery");
    let mut writes = Vec::new();
    for m in [
        s.message(&s.a, &s.b, Some("raced"), "the retry"),
        s.message(&s.b, &s.a, Some("bystander"), "an innocent bystander"),
    ] {
        let w = w.writer.clone();
        writes.push(tokio::spawn(async move { w.write(m).await }));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    // The other node asks for the lock before the batch does, so it gets it next.
    let lock = format!("DO GET_LOCK('chat:{}:seq', 30)", s.db.name);
    let mut other_node = s.db.conn().await;
    let other = tokio::spawn(async move {
        diesel::sql_query(lock)
            .execute(&mut other_node)
            .await
            .expect("the sequence lock");
        other_node
    });
    until_lock_waiters(&mut watcher, &s.db.name, 1).await;
    w.release.notify_one();
    let mut other_node = other.await.expect("lock task");
    new_message(&plug.await.expect("plug task"));
    // The batch has read its clientIds and waits for the lock.
    until_lock_waiters(&mut watcher, &s.db.name, 1).await;

    diesel::sql_query(
        "INSERT INTO messages (channel_id, sender_id, recipient_id, client_id, body, sent_at) \
         VALUES (?, ?, ?, 'raced', 'the first attempt', '2026-01-02 03:04:05.000000')",
    )
    .bind::<BigInt, _>(s.ab)
    .bind::<BigInt, _>(s.a.id)
    .bind::<BigInt, _>(s.b.id)
    .execute(&mut other_node)
    .await
    .expect("the first attempt");
    diesel::sql_query("DO RELEASE_ALL_LOCKS()")
        .execute(&mut other_node)
        .await
        .expect("release");

    let results = answers(writes).await;
    let first_attempt = match &results[0] {
        Ok(Stored::Duplicate(m)) => {
            assert_eq!(m.text, "the first attempt");
            i64::from(m.id)
        }
        other => panic!("expected the stored first attempt: {other:?}"),
    };
    let bystander = i64::from(new_message(&results[1]).id);
    let rows: Vec<(i64, Option<String>)> = all_rows(&mut watcher)
        .await
        .into_iter()
        .filter(|r| r.client_id.as_deref() != Some("plug"))
        .map(|r| (r.id, r.client_id))
        .collect();
    assert_eq!(
        rows,
        vec![
            (s.old_id, Some("old".to_owned())),
            (first_attempt, Some("raced".to_owned())),
            (bystander, Some("bystander".to_owned())),
        ]
    );
    assert_eq!(batches(&w.metrics), (2, 3.0), "the plug, then one batch");
}

/// Messages queued while a batch waits for the sequence lock go in that batch, once the
/// lock is granted. A retry among them (its clientId not looked up before the lock) is
/// still answered with the stored message, and the others are stored once.
#[tokio::test]
async fn messages_queued_while_the_batch_waits_for_the_lock_join_it() {
    let s = Scene::new().await;
    let w = PluggedWriter::start(&s.db.url);
    let mut watcher = s.db.conn().await;

    // Another node holds the lock; the first message's batch waits for it.
    let mut other_node = s.db.conn().await;
    diesel::sql_query(format!("DO GET_LOCK('chat:{}:seq', 30)", s.db.name))
        .execute(&mut other_node)
        .await
        .expect("the sequence lock");
    let mut writes = Vec::new();
    for m in [
        s.message(&s.a, &s.b, Some("first"), "took the lock's queue"),
        s.message(&s.b, &s.a, Some("late"), "came while it waited"),
        s.message(&s.a, &s.b, Some("old"), "a retry of the stored one"),
        s.message(&s.a, &s.c, None, "no clientId"),
    ] {
        let w = w.writer.clone();
        writes.push(tokio::spawn(async move { w.write(m).await }));
        if writes.len() == 1 {
            until_lock_waiters(&mut watcher, &s.db.name, 1).await;
        }
    }
    // The late ones are queued (the writer has nothing else to do with them).
    tokio::time::sleep(Duration::from_millis(200)).await;
    diesel::sql_query("DO RELEASE_ALL_LOCKS()")
        .execute(&mut other_node)
        .await
        .expect("release");
    w.release.notify_one();

    let results = answers(writes).await;
    let first = i64::from(new_message(&results[0]).id);
    let late = i64::from(new_message(&results[1]).id);
    match &results[2] {
        Ok(Stored::Duplicate(m)) => assert_eq!(i64::from(m.id), s.old_id),
        other => panic!("expected the stored message: {other:?}"),
    }
    let bare = i64::from(new_message(&results[3]).id);
    assert!(first < late && late < bare, "ids in queue order");
    let rows: Vec<i64> = all_rows(&mut watcher)
        .await
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(rows, vec![s.old_id, first, late, bare], "each stored once");
    assert_eq!(batches(&w.metrics), (1, 4.0), "one batch of all four");
    let delivered = w.delivered.lock().unwrap().clone();
    assert_eq!(delivered.len(), 1, "one publication");
    let published: Vec<i64> = delivered[0]
        .iter()
        .map(|c| i64::from(c.message.id))
        .collect();
    assert_eq!(published, vec![s.old_id, first, late, bare], "in id order");
}
