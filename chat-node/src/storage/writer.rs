//! The write path: one writer task per node commits messages in groups.
//!
//! Sockets hand a [`NewMessage`] to the [`Writer`] and wait. The task takes whatever is
//! queued (at most `max_batch`; it never waits for more, so an idle node adds no
//! latency) and writes it on its own connection:
//!
//! 1. one lookup of every `clientId` of the batch, before the lock (duplicates inside
//!    the batch are found in memory);
//! 2. the database's one sequence lock (`GET_LOCK('chat:<db>:seq')`), which every
//!    node's batches and every membership change take. Once it is granted, the batch
//!    takes in what was queued while it waited (up to `max_batch`): those messages go
//!    in this turn rather than after the other nodes' next ones. Their `clientId`s were
//!    not looked up; a stored one fails the insert, as in step 4;
//! 3. one lookup of the room memberships its room messages need;
//! 4. one multi-row `INSERT … RETURNING id`, so ids come back in insertion order. It is
//!    the batch's one transaction (autocommit): MariaDB answers it once it is committed.
//!    A retry stored by another node since step 1 fails it on the unique key, writing
//!    nothing; the batch is then looked up and inserted again, under the lock;
//! 5. then the batch is handed to `deliver` (the node publishes it, retrying
//!    while Redis is away), the locks are released, and only then is any sender answered.
//!    A sender is acknowledged only through that publication: a message whose delivery
//!    failed is answered `unavailable`, and the sender's retry (same `clientId`) finds it
//!    stored and publishes it again. A duplicate is always published again, so a message
//!    that was committed but never published (its node died, or its INSERT's answer was
//!    lost) reaches its recipient when its sender retries.
//!
//! The sequence lock is held from before the insert until the batch is published, so ids
//! and the order of publication follow one global order, the order of commits; why that
//! keeps `sync` exact, rooms included, is in docs/design.md. Statements are prepared
//! once per shape and kept in the connection's statement cache; the lists are padded to
//! powers of two so few shapes exist. The writer talks to MySQL through mysql_async
//! directly because diesel can neither express `RETURNING` on MySQL nor cache a statement
//! whose list length varies.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_common::protocol::ChatMessage;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc};
use futures_util::future::BoxFuture;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Row, Value};
use prometheus::Histogram;
use tokio::sync::{mpsc, oneshot};

use super::messages::{to_wire, Wire};
use super::users::User;
use super::StoreError;

/// How long a committed batch waits for Redis before its senders are told to retry.
const DELIVER_BOUND: Duration = Duration::from_secs(10);
/// A MySQL that stops answering (a paused server, a dropped route) fails the batch
/// instead of holding every sender; a connection open that long is closed.
const BATCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a batch waits for the batches of other nodes before it fails.
const LOCK_WAIT_SECS: u32 = 5;
/// Statement shapes per connection: up to `max_batch` INSERTs plus the padded lookups.
const STATEMENT_CACHE: usize = 320;
/// MariaDB's duplicate-key error.
const ER_DUP_ENTRY: u16 = 1062;

/// A message to store, checked and resolved by the socket that received it.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub sender: User,
    pub to: Recipient,
    pub channel_id: i64,
    pub client_id: Option<String>,
    pub text: String,
}

/// Who a message is for.
#[derive(Debug, Clone)]
pub enum Recipient {
    User(User),
    /// A room, by id; the writer checks that the sender is a member.
    Room(i64),
}

impl Recipient {
    fn user_id(&self) -> Option<i64> {
        match self {
            Self::User(u) => Some(u.id),
            Self::Room(_) => None,
        }
    }

    fn room_id(&self) -> Option<i64> {
        match self {
            Self::User(_) => None,
            Self::Room(id) => Some(*id),
        }
    }

    fn username(&self) -> Option<&str> {
        match self {
            Self::User(u) => Some(&u.username),
            Self::Room(_) => None,
        }
    }
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
    /// A room message whose sender is not (or no longer) a member.
    #[error("the sender is not a member of the room")]
    NotAMember,
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

/// A committed message, for delivery: to two user channels, or one room channel.
#[derive(Debug, Clone)]
pub struct Committed {
    pub message: ChatMessage,
    pub sender_id: i64,
    pub recipient_id: Option<i64>,
    pub room_id: Option<i64>,
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
        // The INSERT commits by itself only under autocommit; a server whose default is
        // off must not leave batches uncommitted.
        let opts: Opts = OptsBuilder::from_opts(opts)
            .stmt_cache_size(STATEMENT_CACHE)
            .init(vec!["SET autocommit = 1"])
            .into();
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let locks = LockName::new(opts.db_name().unwrap_or_default());
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
    locks: LockName,
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
            let written = tokio::time::timeout(BATCH_TIMEOUT, self.write(&mut jobs, &mut rx))
                .await
                .unwrap_or_else(|_| Err(StoreError::Write("the batch timed out".into())));
            self.metrics.batch_size.observe(jobs.len() as f64);
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
                        recipient_id: job.message.to.user_id(),
                        room_id: job.message.to.room_id(),
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
                    Outcome::NotAMember => Err(WriteError::NotAMember),
                };
                let _ = job.reply.send(result);
            }
        }
    }

    /// Publishes a committed batch, retrying while Redis is away, with the sequence lock
    /// held: no later message can be published first. Gives up after
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

    /// A connection that cannot release its lock is closed, which releases it.
    async fn release_locks(&mut self) {
        if let Some(conn) = &mut self.conn {
            if let Err(e) = conn.query_drop("DO RELEASE_ALL_LOCKS()").await {
                tracing::error!(error = %e, "releasing the writer's locks failed");
                self.conn = None;
            }
        }
    }

    async fn write(
        &mut self,
        jobs: &mut Vec<Job>,
        rx: &mut mpsc::Receiver<Job>,
    ) -> Result<Vec<Outcome>, StoreError> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let conn = Conn::new(self.opts.clone()).await?;
                self.conn.insert(conn)
            }
        };
        let max = self.max_batch;
        let late = |jobs: &mut Vec<Job>| {
            while jobs.len() < max {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        };
        write_batch(conn, &mut self.sql, &self.locks, jobs, late).await
    }
}

/// What became of one job of a committed batch.
#[derive(Debug)]
enum Outcome {
    Stored(Kind, ChatMessage),
    Reused,
    NotAMember,
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
    /// A room message whose sender is not a member: not stored.
    Refused,
    /// Stored before: the original row.
    Existing(ExistingRow),
    /// Same sender and `clientId` as an earlier job of this batch.
    SameAs(usize),
}

/// Writes the batch under the sequence lock. The lock stays held when this returns `Ok`;
/// the caller releases it after delivery. Once the lock is granted, `late` adds the jobs
/// that came while the batch waited for it, so they go in this turn, not the next.
async fn write_batch(
    conn: &mut Conn,
    sql: &mut Statements,
    lock: &LockName,
    jobs: &mut Vec<Job>,
    late: impl FnOnce(&mut Vec<Job>),
) -> Result<Vec<Outcome>, StoreError> {
    // Read before the lock, so the lock is held for less: a stored `clientId` is a retry,
    // and one that another node stores after this read (or a late job's, not read here)
    // makes the INSERT fail on the unique key, writing nothing; the batch is then
    // planned again under the lock.
    let mut existing = find_existing(conn, sql, jobs).await?;

    let granted: Option<i64> = conn.exec_first(sql.lock(), (lock.name(),)).await?.flatten();
    if granted != Some(1) {
        return Err(StoreError::Write(
            "timed out waiting for the sequence lock".into(),
        ));
    }
    late(jobs);
    existing.resize(jobs.len(), None);
    let jobs: &[Job] = jobs;

    // No BEGIN/COMMIT: the INSERT is the batch's only write, and with autocommit it is a
    // transaction of its own, committed (fsync included) before MariaDB answers it.
    // Membership changes only under this lock, so this read is exact.
    let members = find_members(conn, sql, jobs).await?;
    let mut plans = plan(jobs, &existing, &members);
    let ids = match insert(conn, sql, jobs, &plans).await {
        Err(mysql_async::Error::Server(e)) if e.code == ER_DUP_ENTRY => {
            let existing = find_existing(conn, sql, jobs).await?;
            plans = plan(jobs, &existing, &members);
            insert(conn, sql, jobs, &plans).await?
        }
        ids => ids?,
    };
    let planned = plans.iter().filter(|p| matches!(p, Plan::Insert)).count();
    if ids.len() != planned {
        return Err(StoreError::Write(format!(
            "{planned} rows inserted, {} ids returned",
            ids.len()
        )));
    }

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
                    to_wire(Wire {
                        id,
                        channel: m.channel_id,
                        room: m.to.room_id(),
                        from: &m.sender.username,
                        to: m.to.username(),
                        text: m.text.clone(),
                        sent_at: job.sent_at,
                        client_id: m.client_id.clone(),
                    })?,
                )
            }
            Plan::Refused => Outcome::NotAMember,
            Plan::Existing(row) if row.channel_id != m.channel_id => Outcome::Reused,
            Plan::Existing(row) => Outcome::Stored(
                Kind::Republished,
                to_wire(Wire {
                    id: row.id,
                    channel: row.channel_id,
                    room: m.to.room_id(),
                    from: &m.sender.username,
                    to: m.to.username(),
                    text: row.body,
                    sent_at: row.sent_at,
                    client_id: m.client_id.clone(),
                })?,
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

/// What to do with each job, given the stored rows of its `clientId`s and the senders'
/// room memberships.
fn plan(
    jobs: &[Job],
    existing: &[Option<ExistingRow>],
    members: &HashSet<(i64, i64)>,
) -> Vec<Plan> {
    let mut first_use: HashMap<(i64, &str), usize> = HashMap::new();
    jobs.iter()
        .enumerate()
        .map(|(i, job)| {
            if let Some(room) = job.message.to.room_id() {
                if !members.contains(&(room, job.message.sender.id)) {
                    return Plan::Refused;
                }
            }
            let Some(cid) = job.message.client_id.as_deref() else {
                return Plan::Insert;
            };
            let key = (job.message.sender.id, pad_space(cid));
            if let Some(Some(row)) = existing.get(i) {
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
        .collect()
}

/// Inserts the jobs planned as new, in one statement; their ids, in job order.
async fn insert(
    conn: &mut Conn,
    sql: &mut Statements,
    jobs: &[Job],
    plans: &[Plan],
) -> Result<Vec<i64>, mysql_async::Error> {
    let inserts: Vec<&Job> = jobs
        .iter()
        .zip(plans)
        .filter(|(_, plan)| matches!(plan, Plan::Insert))
        .map(|(job, _)| job)
        .collect();
    if inserts.is_empty() {
        return Ok(Vec::new());
    }
    let mut params = Vec::with_capacity(inserts.len() * 6);
    for job in &inserts {
        let m = &job.message;
        params.extend([
            Value::Int(m.channel_id),
            Value::Int(m.sender.id),
            m.to.user_id().map_or(Value::NULL, Value::Int),
            m.client_id
                .as_ref()
                .map_or(Value::NULL, |c| Value::Bytes(c.clone().into_bytes())),
            Value::Bytes(m.text.clone().into_bytes()),
            to_value(job.sent_at),
        ]);
    }
    conn.exec(sql.insert(inserts.len()), params).await
}

#[derive(Debug, Clone)]
struct ExistingRow {
    id: i64,
    channel_id: i64,
    body: String,
    sent_at: NaiveDateTime,
}

/// For each job, the row already stored under its (sender, clientId), if any.
async fn find_existing(
    conn: &mut Conn,
    sql: &mut Statements,
    jobs: &[Job],
) -> Result<Vec<Option<ExistingRow>>, StoreError> {
    let keys: Vec<Option<(i64, &str)>> = jobs
        .iter()
        .map(|j| {
            j.message
                .client_id
                .as_deref()
                .map(|c| (j.message.sender.id, pad_space(c)))
        })
        .collect();
    let pairs: Vec<(i64, &str)> = keys.iter().flatten().copied().collect();
    let mut found = vec![None; jobs.len()];
    if pairs.is_empty() {
        return Ok(found);
    }
    let padded = pad(pairs
        .iter()
        .map(|(sender, cid)| [Value::Int(*sender), Value::Bytes(cid.as_bytes().to_vec())])
        .collect());
    let params: Vec<Value> = padded.into_iter().flatten().collect();
    let rows: Vec<Row> = conn.exec(sql.existing(params.len() / 2), params).await?;
    for row in rows {
        let (id, channel_id, sender_id, client_id, body, sent_at): (
            i64,
            i64,
            i64,
            String,
            String,
            Value,
        ) = mysql_async::from_row_opt(row).map_err(|e| StoreError::Write(e.to_string()))?;
        // Map the row back to the jobs of its key (the collation is binary).
        let row = ExistingRow {
            id,
            channel_id,
            body,
            sent_at: from_value(&sent_at)?,
        };
        let key = Some((sender_id, pad_space(&client_id)));
        for (slot, _) in found.iter_mut().zip(&keys).filter(|(_, k)| **k == key) {
            *slot = Some(row.clone());
        }
    }
    Ok(found)
}

/// The (room, sender) pairs of the batch's room messages whose sender is a member. Read
/// under the sequence lock, which membership changes take too, so it is exact.
async fn find_members(
    conn: &mut Conn,
    sql: &mut Statements,
    jobs: &[Job],
) -> Result<HashSet<(i64, i64)>, StoreError> {
    let pairs: Vec<[Value; 2]> = jobs
        .iter()
        .filter_map(|j| {
            j.message
                .to
                .room_id()
                .map(|room| [Value::Int(room), Value::Int(j.message.sender.id)])
        })
        .collect();
    if pairs.is_empty() {
        return Ok(HashSet::new());
    }
    let params: Vec<Value> = pad(pairs).into_iter().flatten().collect();
    let rows: Vec<(i64, i64)> = conn.exec(sql.members(params.len() / 2), params).await?;
    Ok(rows.into_iter().collect())
}

/// `client_id` compares with PAD SPACE (`'a' = 'a '`), so the unique key treats ids that
/// differ only in trailing spaces as one; the batch must too.
fn pad_space(client_id: &str) -> &str {
    client_id.trim_end_matches(' ')
}

/// The database's sequence lock (lock names are server-wide, so it names the database).
/// Membership changes ([`super::rooms`]) take the same lock.
pub(super) struct LockName {
    name: String,
}

impl LockName {
    /// MariaDB lock names are at most 64 characters.
    pub(super) fn new(database: &str) -> Self {
        let database: String = database.chars().take(54).collect();
        Self {
            name: format!("chat:{database}:seq"),
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.name
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
    existing: HashMap<usize, String>,
    members: HashMap<usize, String>,
    insert: HashMap<usize, String>,
}

fn placeholders(n: usize, group: &str) -> String {
    vec![group; n].join(",")
}

impl Statements {
    fn lock(&self) -> String {
        format!("SELECT GET_LOCK(?, {LOCK_WAIT_SECS})")
    }

    fn members(&mut self, n: usize) -> &str {
        self.members.entry(n).or_insert_with(|| {
            format!(
                "SELECT room_id, user_id FROM room_members WHERE (room_id, user_id) IN ({})",
                placeholders(n, "(?,?)")
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
        let lock = LockName::new(&"d".repeat(64));
        assert!(lock.name().len() <= 64, "{}", lock.name().len());
        assert!(lock.name().ends_with(":seq"));
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
        assert_eq!(sql.lock(), "SELECT GET_LOCK(?, 5)");
        assert!(sql.members(2).ends_with("IN ((?,?),(?,?))"));
        assert!(sql
            .insert(3)
            .contains("VALUES (?,?,?,?,?,?),(?,?,?,?,?,?),(?,?,?,?,?,?) "));
        assert!(sql.existing(1).ends_with("IN ((?,?))"));
    }
}
