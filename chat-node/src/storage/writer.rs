//! The write path: one writer task per node commits messages in groups.
//!
//! Sockets hand a [`NewMessage`] to the [`Writer`] and wait. The task takes whatever is
//! queued (at most `max_batch`; it never waits for more, so an idle node adds no
//! latency) and writes it as one transaction on its own connection:
//!
//! 1. a named lock (`GET_LOCK`) on every user of the batch, in ascending order;
//! 2. one lookup of every `clientId` of the batch (duplicates inside the batch are found
//!    in memory);
//! 3. one multi-row `INSERT … RETURNING id`, so ids come back in insertion order;
//! 4. `COMMIT`, then the batch is handed to `deliver` (the node publishes it, retrying
//!    while Redis is away), the locks are released, and only then is any sender answered.
//!    A sender is acknowledged only through that publication: a message whose delivery
//!    failed is answered `unavailable`, and the sender's retry (same `clientId`) finds it
//!    stored and publishes it again. A duplicate is always published again, so a message
//!    that was committed but never published (its node died, or its COMMIT's answer was
//!    lost) reaches its recipient when its sender retries.
//!
//! The user locks are held from before the insert until the batch is published, so for
//! each user both the ids and the order of publication follow the order of commits; why
//! that keeps `sync` exact is in docs/design.md. Statements are prepared
//! once per shape and kept in the connection's statement cache; the lists are padded to
//! powers of two so few shapes exist. The writer talks to MySQL through mysql_async
//! directly because diesel can neither express `RETURNING` on MySQL nor cache a statement
//! whose list length varies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_common::protocol::ChatMessage;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc};
use futures_util::future::BoxFuture;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Row, TxOpts, Value};
use prometheus::Histogram;
use tokio::sync::{mpsc, oneshot};

use super::messages::to_wire;
use super::users::User;
use super::StoreError;

/// How long a committed batch waits for Redis before its senders are told to retry.
const DELIVER_BOUND: Duration = Duration::from_secs(10);
/// A MySQL that stops answering (a paused server, a dropped route) fails the batch
/// instead of holding every sender; a connection open that long is closed.
const BATCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a batch waits for another node's batch on the same users.
const LOCK_WAIT_SECS: u32 = 5;
/// Statement shapes per connection: up to `max_batch` INSERTs plus the padded lookups.
const STATEMENT_CACHE: usize = 320;

/// A message to store, checked and resolved by the socket that received it.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub sender: User,
    pub recipient: User,
    pub channel_id: i64,
    pub client_id: Option<String>,
    pub text: String,
}

/// What the writer did with one message; either way it was committed and published, so
/// the sender's sockets receive it (their acknowledgement) on the user channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    New(ChatMessage),
    /// The sender's `clientId` was already stored: the original, published again.
    Duplicate(ChatMessage),
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("clientId was already used in another conversation")]
    ClientIdReused,
    /// The batch failed as a whole; nothing of it was committed.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the writer has stopped")]
    Stopped,
    /// Committed, but Redis did not take it in time: the sender retries with the same
    /// `clientId`, which publishes the stored message.
    #[error("the message was stored but could not be published")]
    NotPublished,
}

/// A committed message, for delivery.
#[derive(Debug, Clone)]
pub struct Committed {
    pub message: ChatMessage,
    pub sender_id: i64,
    pub recipient_id: i64,
}

/// Publishes a committed batch in id order; true when every event went out.
pub type Deliver = Arc<dyn Fn(Vec<Committed>) -> BoxFuture<'static, bool> + Send + Sync>;

struct Job {
    message: NewMessage,
    sent_at: NaiveDateTime,
    reply: oneshot::Sender<Result<Stored, WriteError>>,
}

#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub max_batch: usize,
    /// Messages waiting for the writer before senders wait to enqueue.
    pub queue: usize,
}

/// The handle sockets use; cheap to clone. The task ends when every handle is gone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

/// Observations of each batch.
#[derive(Clone)]
pub struct WriterMetrics {
    pub batch_size: Histogram,
    pub batch_seconds: Histogram,
}

impl Writer {
    pub fn start(
        database_url: &str,
        config: WriterConfig,
        deliver: Deliver,
        metrics: WriterMetrics,
    ) -> Result<Self, StoreError> {
        let opts = Opts::from_url(database_url).map_err(|e| StoreError::Url(e.to_string()))?;
        let opts: Opts = OptsBuilder::from_opts(opts)
            .stmt_cache_size(STATEMENT_CACHE)
            .into();
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let locks = LockNames::new(opts.db_name().unwrap_or_default());
        let task = Task {
            opts,
            locks,
            conn: None,
            max_batch: config.max_batch.max(1),
            deliver,
            metrics,
            sql: Statements::default(),
        };
        tokio::spawn(task.run(rx));
        Ok(Self { tx })
    }

    /// Stores the message; returns once it is committed and handed to delivery.
    pub async fn write(&self, message: NewMessage) -> Result<Stored, WriteError> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            message,
            sent_at: now_micros(),
            reply,
        };
        self.tx.send(job).await.map_err(|_| WriteError::Stopped)?;
        rx.await.map_err(|_| WriteError::Stopped)?
    }
}

struct Task {
    opts: Opts,
    locks: LockNames,
    /// Opened on first use and dropped after any error, so a restarted MySQL is
    /// reconnected to by the next batch.
    conn: Option<Conn>,
    max_batch: usize,
    deliver: Deliver,
    metrics: WriterMetrics,
    sql: Statements,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(self.max_batch);
        while rx.recv_many(&mut jobs, self.max_batch).await > 0 {
            let started = Instant::now();
            self.metrics.batch_size.observe(jobs.len() as f64);
            let written = tokio::time::timeout(BATCH_TIMEOUT, self.write(&jobs))
                .await
                .unwrap_or_else(|_| Err(StoreError::Write("the batch timed out".into())));
            let outcomes = match written {
                Ok(outcomes) => outcomes,
                Err(e) => {
                    tracing::error!(error = %e, messages = jobs.len(), "batch failed");
                    // Closing the connection also releases its locks.
                    self.conn = None;
                    for job in jobs.drain(..) {
                        let _ = job
                            .reply
                            .send(Err(WriteError::Store(StoreError::Write(e.to_string()))));
                    }
                    continue;
                }
            };
            self.metrics
                .batch_seconds
                .observe(started.elapsed().as_secs_f64());
            // In id order (stored duplicates are older than the batch's new messages); a
            // repeat inside the batch is published with its first occurrence.
            let mut committed: Vec<Committed> = outcomes
                .iter()
                .zip(&jobs)
                .filter_map(|(outcome, job)| match outcome {
                    Outcome::Stored(Kind::New | Kind::Republished, message) => Some(Committed {
                        message: message.clone(),
                        sender_id: job.message.sender.id,
                        recipient_id: job.message.recipient.id,
                    }),
                    _ => None,
                })
                .collect();
            committed.sort_by_key(|c| c.message.id);
            let published = committed.is_empty() || self.deliver_until(committed).await;
            self.release_locks().await;
            for (job, outcome) in jobs.drain(..).zip(outcomes) {
                let result = match outcome {
                    Outcome::Stored(_, _) if !published => Err(WriteError::NotPublished),
                    Outcome::Stored(Kind::New, message) => Ok(Stored::New(message)),
                    Outcome::Stored(_, message) => Ok(Stored::Duplicate(message)),
                    Outcome::Reused => Err(WriteError::ClientIdReused),
                };
                let _ = job.reply.send(result);
            }
        }
    }

    /// Publishes a committed batch, retrying while Redis is away, with the users' locks
    /// held: no later message of theirs can be published first. Gives up after
    /// [`DELIVER_BOUND`] so senders are answered; their retries publish it again.
    async fn deliver_until(&self, committed: Vec<Committed>) -> bool {
        let deadline = Instant::now() + DELIVER_BOUND;
        let mut pause = Duration::from_millis(50);
        loop {
            if (self.deliver)(committed.clone()).await {
                return true;
            }
            if Instant::now() + pause > deadline {
                return false;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// A connection that cannot release its locks is closed, which releases them.
    async fn release_locks(&mut self) {
        if let Some(conn) = &mut self.conn {
            if let Err(e) = conn.query_drop("DO RELEASE_ALL_LOCKS()").await {
                tracing::error!(error = %e, "releasing the writer's locks failed");
                self.conn = None;
            }
        }
    }

    async fn write(&mut self, jobs: &[Job]) -> Result<Vec<Outcome>, StoreError> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let conn = Conn::new(self.opts.clone()).await?;
                self.conn.insert(conn)
            }
        };
        write_batch(conn, &mut self.sql, &self.locks, jobs).await
    }
}

/// What became of one job of a committed batch.
#[derive(Debug)]
enum Outcome {
    Stored(Kind, ChatMessage),
    Reused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Inserted by this batch.
    New,
    /// Stored before: published again.
    Republished,
    /// The same `clientId` earlier in this batch: published with its first occurrence.
    Repeat,
}

/// How a job's `clientId` was resolved before the insert.
enum Plan {
    Insert,
    /// Stored before: the original row.
    Existing(ExistingRow),
    /// Same sender and `clientId` as an earlier job of this batch.
    SameAs(usize),
}

/// Locks the batch's users, then writes it as one transaction. The locks stay held when
/// this returns `Ok`; the caller releases them after delivery.
async fn write_batch(
    conn: &mut Conn,
    sql: &mut Statements,
    locks: &LockNames,
    jobs: &[Job],
) -> Result<Vec<Outcome>, StoreError> {
    let mut users: Vec<i64> = jobs
        .iter()
        .flat_map(|j| [j.message.sender.id, j.message.recipient.id])
        .collect();
    users.sort_unstable();
    users.dedup();
    let names = pad(users.iter().map(|id| locks.user(*id)).collect());
    let granted: Vec<Row> = conn.exec(sql.lock(names.len()), names).await?;
    let all_granted = granted.first().is_some_and(|row| {
        (0..row.len()).all(|i| matches!(row.as_ref(i), Some(Value::Int(1) | Value::UInt(1))))
    });
    if !all_granted {
        return Err(StoreError::Write(
            "timed out waiting for the users' write locks".into(),
        ));
    }

    let mut tx = conn.start_transaction(TxOpts::default()).await?;

    let existing = find_existing(&mut tx, sql, jobs).await?;
    let mut first_use: HashMap<(i64, &str), usize> = HashMap::new();
    let plans: Vec<Plan> = jobs
        .iter()
        .enumerate()
        .map(|(i, job)| {
            let Some(cid) = job.message.client_id.as_deref() else {
                return Plan::Insert;
            };
            let key = (job.message.sender.id, pad_space(cid));
            if let Some(row) = existing.get(&key) {
                return Plan::Existing(row.clone());
            }
            match first_use.get(&key) {
                Some(first) => Plan::SameAs(*first),
                None => {
                    first_use.insert(key, i);
                    Plan::Insert
                }
            }
        })
        .collect();

    let inserts: Vec<&Job> = jobs
        .iter()
        .zip(&plans)
        .filter(|(_, plan)| matches!(plan, Plan::Insert))
        .map(|(job, _)| job)
        .collect();
    let ids = if inserts.is_empty() {
        Vec::new()
    } else {
        let mut params = Vec::with_capacity(inserts.len() * 6);
        for job in &inserts {
            let m = &job.message;
            params.extend([
                Value::Int(m.channel_id),
                Value::Int(m.sender.id),
                Value::Int(m.recipient.id),
                m.client_id
                    .as_ref()
                    .map_or(Value::NULL, |c| Value::Bytes(c.clone().into_bytes())),
                Value::Bytes(m.text.clone().into_bytes()),
                to_value(job.sent_at),
            ]);
        }
        let ids: Vec<i64> = tx.exec(sql.insert(inserts.len()), params).await?;
        if ids.len() != inserts.len() {
            return Err(StoreError::Write(format!(
                "{} rows inserted, {} ids returned",
                inserts.len(),
                ids.len()
            )));
        }
        ids
    };
    tx.commit().await?;

    let mut ids = ids.into_iter();
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(jobs.len());
    for (job, plan) in jobs.iter().zip(plans) {
        let m = &job.message;
        let outcome = match plan {
            Plan::Insert => {
                let id = ids
                    .next()
                    .ok_or_else(|| StoreError::Write("an id is missing".into()))?;
                Outcome::Stored(
                    Kind::New,
                    to_wire(
                        id,
                        m.channel_id,
                        &m.sender.username,
                        &m.recipient.username,
                        m.text.clone(),
                        job.sent_at,
                        m.client_id.clone(),
                    )?,
                )
            }
            Plan::Existing(row) if row.channel_id != m.channel_id => Outcome::Reused,
            Plan::Existing(row) => Outcome::Stored(
                Kind::Republished,
                to_wire(
                    row.id,
                    row.channel_id,
                    &m.sender.username,
                    &m.recipient.username,
                    row.body,
                    row.sent_at,
                    m.client_id.clone(),
                )?,
            ),
            Plan::SameAs(first) => match (&outcomes[first], jobs[first].message.channel_id) {
                (Outcome::Stored(Kind::New, original), channel) if channel == m.channel_id => {
                    Outcome::Stored(Kind::Repeat, original.clone())
                }
                _ => Outcome::Reused,
            },
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

#[derive(Debug, Clone)]
struct ExistingRow {
    id: i64,
    channel_id: i64,
    body: String,
    sent_at: NaiveDateTime,
}

/// Rows already stored under the batch's (sender, clientId) pairs.
async fn find_existing<'j>(
    tx: &mut mysql_async::Transaction<'_>,
    sql: &mut Statements,
    jobs: &'j [Job],
) -> Result<HashMap<(i64, &'j str), ExistingRow>, StoreError> {
    let pairs: Vec<(i64, &str)> = jobs
        .iter()
        .filter_map(|j| {
            j.message
                .client_id
                .as_deref()
                .map(|c| (j.message.sender.id, pad_space(c)))
        })
        .collect();
    let mut found = HashMap::new();
    if pairs.is_empty() {
        return Ok(found);
    }
    let padded = pad(pairs
        .iter()
        .map(|(sender, cid)| [Value::Int(*sender), Value::Bytes(cid.as_bytes().to_vec())])
        .collect());
    let params: Vec<Value> = padded.into_iter().flatten().collect();
    let rows: Vec<Row> = tx.exec(sql.existing(params.len() / 2), params).await?;
    for row in rows {
        let (id, channel_id, sender_id, client_id, body, sent_at): (
            i64,
            i64,
            i64,
            String,
            String,
            Value,
        ) = mysql_async::from_row_opt(row).map_err(|e| StoreError::Write(e.to_string()))?;
        // Map the row back to the batch's borrowed key (the collation is binary).
        if let Some(key) = pairs
            .iter()
            .find(|(s, c)| *s == sender_id && *c == pad_space(&client_id))
        {
            let sent_at = from_value(&sent_at)?;
            found.insert(
                *key,
                ExistingRow {
                    id,
                    channel_id,
                    body,
                    sent_at,
                },
            );
        }
    }
    Ok(found)
}

/// `client_id` compares with PAD SPACE (`'a' = 'a '`), so the unique key treats ids that
/// differ only in trailing spaces as one; the batch must too.
fn pad_space(client_id: &str) -> &str {
    client_id.trim_end_matches(' ')
}

/// Named locks, one per user, scoped to this database (lock names are server-wide).
struct LockNames {
    prefix: String,
}

impl LockNames {
    /// MariaDB lock names are at most 64 characters; a user id takes at most 20 more.
    fn new(database: &str) -> Self {
        let database: String = database.chars().take(36).collect();
        Self {
            prefix: format!("chat:{database}:u:"),
        }
    }

    fn user(&self, user_id: i64) -> Value {
        Value::Bytes(format!("{}{user_id}", self.prefix).into_bytes())
    }
}

/// Pads a list to the next power of two by repeating its last item, so an `IN` list
/// has one of a few shapes (a repeated value does not change what `IN` matches).
fn pad<T: Clone>(mut items: Vec<T>) -> Vec<T> {
    let target = items.len().next_power_of_two();
    if let Some(last) = items.last().cloned() {
        items.resize(target, last);
    }
    items
}

/// SQL text per list length, built once.
#[derive(Default)]
struct Statements {
    lock: HashMap<usize, String>,
    existing: HashMap<usize, String>,
    insert: HashMap<usize, String>,
}

fn placeholders(n: usize, group: &str) -> String {
    vec![group; n].join(",")
}

impl Statements {
    fn lock(&mut self, n: usize) -> &str {
        // Left to right, so in ascending order: two batches never deadlock.
        self.lock.entry(n).or_insert_with(|| {
            format!(
                "SELECT {}",
                placeholders(n, &format!("GET_LOCK(?, {LOCK_WAIT_SECS})"))
            )
        })
    }

    fn existing(&mut self, n: usize) -> &str {
        self.existing.entry(n).or_insert_with(|| {
            format!(
                "SELECT id, channel_id, sender_id, client_id, body, sent_at FROM messages \
                     WHERE (sender_id, client_id) IN ({})",
                placeholders(n, "(?,?)")
            )
        })
    }

    fn insert(&mut self, n: usize) -> &str {
        self.insert.entry(n).or_insert_with(|| {
            format!(
                "INSERT INTO messages \
                     (channel_id, sender_id, recipient_id, client_id, body, sent_at) \
                     VALUES {} RETURNING id",
                placeholders(n, "(?,?,?,?,?,?)")
            )
        })
    }
}

/// Now, cut to the microseconds MySQL keeps, so the acknowledgement equals the stored row.
fn now_micros() -> NaiveDateTime {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros())
        .unwrap_or(now)
        .naive_utc()
}

fn to_value(t: NaiveDateTime) -> Value {
    Value::Date(
        u16::try_from(t.year()).unwrap_or(0),
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
        t.nanosecond() / 1000,
    )
}

fn from_value(value: &Value) -> Result<NaiveDateTime, StoreError> {
    let bad = || StoreError::Range(format!("not a DATETIME: {value:?}"));
    match *value {
        Value::Date(y, mo, d, h, mi, s, us) => {
            NaiveDate::from_ymd_opt(y.into(), mo.into(), d.into())
                .and_then(|date| date.and_hms_micro_opt(h.into(), mi.into(), s.into(), us))
                .ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_match_as_the_pad_space_collation_does() {
        assert_eq!(pad_space("old  "), pad_space("old"));
        assert_ne!(pad_space(" old"), pad_space("old"));
        assert_ne!(pad_space("old\t"), pad_space("old"));
    }

    #[test]
    fn lock_names_fit_mariadb_limit() {
        let locks = LockNames::new(&"d".repeat(64));
        let Value::Bytes(name) = locks.user(i64::MAX) else {
            panic!("a lock name is bytes");
        };
        assert!(name.len() <= 64, "{}", name.len());
    }

    #[test]
    fn lists_are_padded_to_a_power_of_two_with_their_last_item() {
        assert_eq!(pad(vec![1, 2, 3]), vec![1, 2, 3, 3]);
        assert_eq!(pad(vec![1, 2, 3, 4]), vec![1, 2, 3, 4]);
        assert_eq!(pad(vec![7]), vec![7]);
        assert_eq!(pad(Vec::<i32>::new()), Vec::<i32>::new());
    }

    #[test]
    fn datetimes_survive_the_round_trip_to_mysql_values() {
        let t = now_micros();
        assert_eq!(from_value(&to_value(t)).unwrap(), t);
        assert!(from_value(&Value::Int(3)).is_err());
        assert!(from_value(&Value::Date(2026, 2, 30, 0, 0, 0, 0)).is_err());
    }

    #[test]
    fn statements_have_one_placeholder_group_per_item() {
        let mut sql = Statements::default();
        assert_eq!(sql.lock(2), "SELECT GET_LOCK(?, 5),GET_LOCK(?, 5)");
        assert!(sql
            .insert(3)
            .contains("VALUES (?,?,?,?,?,?),(?,?,?,?,?,?),(?,?,?,?,?,?) "));
        assert!(sql.existing(1).ends_with("IN ((?,?))"));
    }
}
