//! Fan-out: the node's local connections and its one Redis pub/sub connection.
//!
//! Every user has a channel (`<prefix>:u:<id>`) carrying their messages, typing and logout
//! events, and a presence channel (`<prefix>:p:<name>`). A node subscribes to the user
//! channels of its connected users and the presence channels its connections watch, all
//! on one subscriber connection; the [`Hub`] counts who needs what, and the subscriber task
//! turns the changes into batched SUBSCRIBE/UNSUBSCRIBE commands. Publishing a message
//! costs two PUBLISH calls whatever the number of nodes, and Redis hands it only to the
//! nodes that hold one of the two users.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytestring::ByteString;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::redis_store::{Keys, Redis};

pub type ConnId = u64;

/// How many frames may wait for one slow socket before the node gives up on it.
pub const OUTBOX_CAPACITY: usize = 512;
const RESUBSCRIBE_BACKOFF: Duration = Duration::from_millis(500);
/// How long a new socket waits for its subscriptions before giving up.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// What a socket task is asked to do.
#[derive(Debug)]
pub enum Outbound {
    Text(ByteString),
    /// Close with this code (the session was logged out, or the node lost Redis).
    Close(u16, &'static str),
}

/// The envelope on a user channel: a server frame for every socket of the user, or a
/// logout. A plain struct rather than a tagged enum, so the frame can stay a `RawValue`
/// and be forwarded without parsing it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserEvent<F> {
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub frame: Option<F>,
    /// The other party of a message, so sockets start watching their presence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// When the message was stored, to time the fan-out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_at_us: Option<i64>,
    /// The session with this tag logged out: its sockets close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logout: Option<String>,
}

fn none<F>() -> Option<F> {
    None
}

impl<F> UserEvent<F> {
    pub fn frame(frame: F, peer: Option<String>, stored_at_us: Option<i64>) -> Self {
        Self {
            frame: Some(frame),
            peer,
            stored_at_us,
            logout: None,
        }
    }

    pub fn logout(session_tag: String) -> Self {
        Self {
            frame: None,
            peer: None,
            stored_at_us: None,
            logout: Some(session_tag),
        }
    }
}

pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Sub {
    User(i64),
    Presence(String),
    /// Every presence channel, by pattern: wanted while a socket lists the whole directory.
    AllPresence,
    Directory,
}

/// One subscription to add or drop.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SubChange {
    channel: String,
    pattern: bool,
    wanted: bool,
}

struct Conn {
    user_id: i64,
    username: String,
    session_tag: String,
    tx: mpsc::Sender<Outbound>,
    /// Users whose presence this socket follows, besides everyone's when it is in
    /// `State::everyone`.
    watching: HashSet<String>,
}

#[derive(Default)]
struct State {
    conns: HashMap<ConnId, Conn>,
    by_user: HashMap<i64, HashSet<ConnId>>,
    watchers: HashMap<String, HashSet<ConnId>>,
    /// Sockets whose `updateUsers` listed the whole directory: they follow every presence
    /// change (one pattern subscription for the node) rather than a set per socket, which
    /// would cost sockets × users memory.
    everyone: HashSet<ConnId>,
    /// Subscriptions that may have changed since the subscriber last looked.
    dirty: HashSet<Sub>,
}

impl State {
    fn wanted(&self, sub: &Sub) -> bool {
        match sub {
            Sub::User(id) => self.by_user.contains_key(id),
            // The pattern covers every presence channel while it is on; an exact
            // subscription beside it would deliver each change twice.
            Sub::Presence(name) => self.everyone.is_empty() && self.watchers.contains_key(name),
            Sub::AllPresence => !self.everyone.is_empty(),
            Sub::Directory => true,
        }
    }

    /// The pattern subscription turns on or off: every exact presence subscription
    /// flips the other way.
    fn everyone_toggled(&mut self) {
        let names: Vec<Sub> = self
            .watchers
            .keys()
            .map(|n| Sub::Presence(n.clone()))
            .collect();
        self.dirty.extend(names);
        self.dirty.insert(Sub::AllPresence);
    }

    fn send(&self, id: ConnId, out: Outbound) -> bool {
        match self.conns.get(&id) {
            Some(conn) => conn.tx.try_send(out).is_ok(),
            None => false,
        }
    }

    /// Queues `text` for each socket; returns those whose outbox was full.
    fn broadcast(&self, ids: &[ConnId], text: &ByteString) -> Vec<ConnId> {
        ids.iter()
            .copied()
            .filter(|id| !self.send(*id, Outbound::Text(text.clone())))
            .collect()
    }

    /// Makes socket `id` follow `name`'s presence; true when the node must subscribe.
    fn add_watch(&mut self, id: ConnId, name: &str) -> bool {
        if self.everyone.contains(&id) {
            return false;
        }
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        // A socket's own user is online while it is open: no need to follow them.
        if conn.username == name || !conn.watching.insert(name.to_owned()) {
            return false;
        }
        let set = self.watchers.entry(name.to_owned()).or_default();
        set.insert(id);
        if set.len() == 1 {
            self.dirty.insert(Sub::Presence(name.to_owned()));
            return true;
        }
        false
    }
}

/// The node's registry of local sockets; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    state: Mutex<State>,
    keys: Keys,
    next_id: AtomicU64,
    changed: Notify,
    flush_tx: mpsc::UnboundedSender<oneshot::Sender<()>>,
    metrics: Metrics,
}

impl Hub {
    pub fn new(
        keys: Keys,
        metrics: Metrics,
    ) -> (Self, mpsc::UnboundedReceiver<oneshot::Sender<()>>) {
        let (flush_tx, flush_rx) = mpsc::unbounded_channel();
        let hub = Self {
            inner: Arc::new(HubInner {
                state: Mutex::new(State::default()),
                keys,
                next_id: AtomicU64::new(1),
                changed: Notify::new(),
                flush_tx,
                metrics,
            }),
        };
        (hub, flush_rx)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock would be a bug in the few lines below; the map
        // stays consistent at every await-free step, so keep serving.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn register(
        &self,
        user_id: i64,
        username: &str,
        session_tag: &str,
        tx: mpsc::Sender<Outbound>,
    ) -> ConnId {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut st = self.state();
        st.conns.insert(
            id,
            Conn {
                user_id,
                username: username.to_owned(),
                session_tag: session_tag.to_owned(),
                tx,
                watching: HashSet::new(),
            },
        );
        let conns = st.by_user.entry(user_id).or_default();
        conns.insert(id);
        if conns.len() == 1 {
            st.dirty.insert(Sub::User(user_id));
        }
        let users = st.by_user.len();
        drop(st);
        self.inner.metrics.connected_users.set(users as i64);
        self.inner.changed.notify_one();
        id
    }

    pub fn unregister(&self, id: ConnId) {
        let mut st = self.state();
        let Some(conn) = st.conns.remove(&id) else {
            return;
        };
        if st.everyone.remove(&id) && st.everyone.is_empty() {
            st.everyone_toggled();
        }
        for name in &conn.watching {
            if let Some(set) = st.watchers.get_mut(name) {
                set.remove(&id);
                if set.is_empty() {
                    st.watchers.remove(name);
                    st.dirty.insert(Sub::Presence(name.clone()));
                }
            }
        }
        if let Some(set) = st.by_user.get_mut(&conn.user_id) {
            set.remove(&id);
            if set.is_empty() {
                st.by_user.remove(&conn.user_id);
                st.dirty.insert(Sub::User(conn.user_id));
            }
        }
        let users = st.by_user.len();
        drop(st);
        self.inner.metrics.connected_users.set(users as i64);
        self.inner.changed.notify_one();
    }

    /// The socket now receives presence changes of these users.
    pub fn watch<'a>(&self, id: ConnId, usernames: impl IntoIterator<Item = &'a str>) {
        let mut st = self.state();
        let mut changed = false;
        for name in usernames {
            changed |= st.add_watch(id, name);
        }
        drop(st);
        if changed {
            self.inner.changed.notify_one();
        }
    }

    /// The socket listed the whole directory: it follows every presence change, and
    /// users who register later are announced to it.
    pub fn follow_everyone(&self, id: ConnId) {
        let mut st = self.state();
        if !st.conns.contains_key(&id) {
            return;
        }
        let first = st.everyone.is_empty();
        st.everyone.insert(id);
        if first {
            st.everyone_toggled();
            drop(st);
            self.inner.changed.notify_one();
        }
    }

    /// Waits until the subscriber has applied every change made so far; false when it
    /// could not within [`FLUSH_TIMEOUT`] (Redis unreachable).
    pub async fn flush(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.inner.flush_tx.send(tx).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(FLUSH_TIMEOUT, rx).await, Ok(Ok(())))
    }

    pub fn is_connected(&self, user_id: i64) -> bool {
        self.state().by_user.contains_key(&user_id)
    }

    /// One name per user with a socket here (`by_user` holds each user once).
    pub fn local_users(&self) -> Vec<String> {
        let st = self.state();
        st.by_user
            .values()
            .filter_map(|ids| ids.iter().next())
            .filter_map(|id| st.conns.get(id).map(|c| c.username.clone()))
            .collect()
    }

    /// Asks every socket to close, e.g. when deliveries may have been missed.
    pub fn close_all(&self, code: u16, reason: &'static str) {
        let st = self.state();
        for conn in st.conns.values() {
            let _ = conn.tx.try_send(Outbound::Close(code, reason));
        }
    }

    fn take_dirty(&self) -> Vec<SubChange> {
        let mut st = self.state();
        let dirty: Vec<Sub> = st.dirty.drain().collect();
        dirty
            .into_iter()
            .map(|sub| {
                let wanted = st.wanted(&sub);
                self.change(&sub, wanted)
            })
            .collect()
    }

    /// Everything to subscribe to on a fresh subscriber connection.
    fn all_wanted(&self) -> Vec<SubChange> {
        let mut st = self.state();
        st.dirty.clear();
        let users = st.by_user.keys().map(|id| Sub::User(*id));
        let presence = st.watchers.keys().map(|n| Sub::Presence(n.clone()));
        let all: Vec<Sub> = users
            .chain(presence)
            .chain([Sub::AllPresence, Sub::Directory])
            .collect();
        all.into_iter()
            .filter(|sub| st.wanted(sub))
            .map(|sub| self.change(&sub, true))
            .collect()
    }

    fn change(&self, sub: &Sub, wanted: bool) -> SubChange {
        SubChange {
            channel: self.channel_name(sub),
            pattern: *sub == Sub::AllPresence,
            wanted,
        }
    }

    fn channel_name(&self, sub: &Sub) -> String {
        match sub {
            Sub::User(id) => self.inner.keys.user_channel(*id),
            Sub::Presence(name) => self.inner.keys.presence_channel(name),
            Sub::AllPresence => format!(
                "{}*",
                glob_escape(&self.inner.keys.presence_channel_prefix())
            ),
            Sub::Directory => self.inner.keys.directory_channel(),
        }
    }

    fn parse_channel(&self, channel: &str) -> Option<Sub> {
        let rest = channel
            .strip_prefix(self.inner.keys.prefix())?
            .strip_prefix(':')?;
        if rest == "directory" {
            return Some(Sub::Directory);
        }
        if let Some(id) = rest.strip_prefix("u:") {
            return id.parse().ok().map(Sub::User);
        }
        // Usernames have no ':', so a longer name is another deployment's channel that
        // happens to match the pattern.
        rest.strip_prefix("p:")
            .filter(|n| !n.contains(':'))
            .map(|n| Sub::Presence(n.to_owned()))
    }

    /// Hands one pub/sub message to the local sockets it concerns.
    pub fn dispatch(&self, channel: &str, payload: &[u8]) {
        match self.parse_channel(channel) {
            Some(Sub::User(user_id)) => self.dispatch_user(user_id, payload),
            Some(Sub::Presence(name)) => {
                let Ok(text) = std::str::from_utf8(payload) else {
                    return;
                };
                let text = ByteString::from(text.to_owned());
                let st = self.state();
                // Everyone's presence, but not one's own: the directory leaves oneself out.
                let mut ids: Vec<ConnId> = st
                    .everyone
                    .iter()
                    .copied()
                    .filter(|id| st.conns.get(id).is_some_and(|c| c.username != name))
                    .collect();
                if let Some(watchers) = st.watchers.get(&name) {
                    ids.extend(watchers.iter().filter(|id| !st.everyone.contains(id)));
                }
                let stuck = st.broadcast(&ids, &text);
                drop(st);
                self.evict(stuck);
            }
            Some(Sub::Directory) => self.dispatch_new_user(payload),
            Some(Sub::AllPresence) | None => {
                tracing::warn!(channel, "message on an unknown channel")
            }
        }
    }

    /// A user registered: sockets that list everyone learn of them (they already follow
    /// every presence change).
    fn dispatch_new_user(&self, payload: &[u8]) {
        #[derive(Deserialize)]
        struct NewUser {
            username: String,
        }
        let Ok(user) = serde_json::from_slice::<NewUser>(payload) else {
            tracing::warn!("undecodable event on the directory channel");
            return;
        };
        let Ok(text) = std::str::from_utf8(payload) else {
            return;
        };
        let text = ByteString::from(text.to_owned());
        let st = self.state();
        let ids: Vec<ConnId> = st
            .everyone
            .iter()
            .copied()
            .filter(|id| {
                st.conns
                    .get(id)
                    .is_some_and(|c| !c.username.eq_ignore_ascii_case(&user.username))
            })
            .collect();
        let stuck = st.broadcast(&ids, &text);
        drop(st);
        self.evict(stuck);
    }

    fn dispatch_user(&self, user_id: i64, payload: &[u8]) {
        let event: UserEvent<&RawValue> = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable event on a user channel");
                return;
            }
        };
        let mut st = self.state();
        let ids: Vec<ConnId> = st
            .by_user
            .get(&user_id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        match event {
            UserEvent {
                logout: Some(session_tag),
                ..
            } => {
                for id in ids {
                    let same = st
                        .conns
                        .get(&id)
                        .is_some_and(|c| c.session_tag == session_tag);
                    if same {
                        st.send(id, Outbound::Close(1008, "logged out"));
                    }
                }
            }
            UserEvent {
                frame: Some(frame),
                peer,
                stored_at_us,
                ..
            } => {
                let text = ByteString::from(frame.get().to_owned());
                let stuck = st.broadcast(&ids, &text);
                let mut changed = false;
                if let Some(peer) = &peer {
                    for id in &ids {
                        changed |= st.add_watch(*id, peer);
                    }
                }
                drop(st);
                if changed {
                    self.inner.changed.notify_one();
                }
                if let Some(stored) = stored_at_us {
                    let delivered = (ids.len() - stuck.len()) as u64;
                    self.inner.metrics.messages_delivered.inc_by(delivered);
                    let latency = (now_us() - stored).max(0) as f64 / 1e6;
                    self.inner.metrics.fanout_latency.observe(latency);
                }
                self.evict(stuck);
            }
            UserEvent { .. } => tracing::warn!("empty event on a user channel"),
        }
    }

    /// Sockets whose outbox is full are closed rather than slowing everyone down; the
    /// client reconnects and syncs.
    fn evict(&self, stuck: Vec<ConnId>) {
        if stuck.is_empty() {
            return;
        }
        let mut st = self.state();
        for id in stuck {
            tracing::warn!(conn = id, "socket too slow, closing it");
            // Dropping the sender ends the socket task's outbox, which closes the socket.
            if let Some(conn) = st.conns.get_mut(&id) {
                let (dead, _) = mpsc::channel(1);
                conn.tx = dead;
            }
        }
    }
}

/// Runs the node's subscriber connection until `shutdown`; reconnects when Redis drops it.
pub async fn run_subscriber(
    hub: Hub,
    redis: Redis,
    mut flush_rx: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    shutdown: CancellationToken,
) {
    let mut first = true;
    while !shutdown.is_cancelled() {
        let pubsub = match redis.client().get_async_pubsub().await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "redis subscriber connection failed");
                tokio::select! {
                    _ = tokio::time::sleep(RESUBSCRIBE_BACKOFF) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
        };
        if !first {
            // Messages published while we were away are not replayed by Redis: close the
            // sockets so their clients reconnect and `sync` what they missed.
            hub.close_all(1012, "node lost its redis subscription");
        }
        first = false;
        let (mut sink, mut stream) = pubsub.split();
        if let Err(e) = subscribe_all(&mut sink, hub.all_wanted()).await {
            tracing::error!(error = %e, "redis subscribe failed");
            continue;
        }
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => {
                        hub.dispatch(msg.get_channel_name(), msg.get_payload_bytes());
                        // A message can make sockets watch someone new (a peer, a new
                        // user): subscribe before reading on, so their next presence
                        // change is not missed.
                        if apply(&hub, &mut sink).await.is_err() { break; }
                    }
                    None => {
                        tracing::error!("redis subscriber connection lost");
                        break;
                    }
                },
                _ = hub.inner.changed.notified() => {
                    if apply(&hub, &mut sink).await.is_err() { break; }
                }
                Some(ack) = flush_rx.recv() => {
                    let ok = apply(&hub, &mut sink).await.is_ok();
                    let _ = ack.send(());
                    if !ok { break; }
                }
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

async fn apply(hub: &Hub, sink: &mut redis::aio::PubSubSink) -> Result<(), redis::RedisError> {
    subscribe_all(sink, hub.take_dirty()).await
}

/// Sends the changes as at most four batched commands.
async fn subscribe_all(
    sink: &mut redis::aio::PubSubSink,
    changes: Vec<SubChange>,
) -> Result<(), redis::RedisError> {
    let pick = |pattern: bool, wanted: bool| -> Vec<String> {
        changes
            .iter()
            .filter(|c| c.pattern == pattern && c.wanted == wanted)
            .map(|c| c.channel.clone())
            .collect()
    };
    let (subscribe, unsubscribe) = (pick(false, true), pick(false, false));
    let (psubscribe, punsubscribe) = (pick(true, true), pick(true, false));
    if !subscribe.is_empty() {
        sink.subscribe(&subscribe).await?;
    }
    if !psubscribe.is_empty() {
        sink.psubscribe(&psubscribe).await?;
    }
    if !unsubscribe.is_empty() {
        sink.unsubscribe(&unsubscribe).await?;
    }
    if !punsubscribe.is_empty() {
        sink.punsubscribe(&punsubscribe).await?;
    }
    Ok(())
}

/// Escapes Redis glob characters so a prefix is matched literally.
fn glob_escape(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for c in literal.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Bytes of a frame serialised once for every socket it goes to.
pub fn frame_text(frame: &impl Serialize) -> ByteString {
    ByteString::from(serde_json::to_string(frame).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Hub {
        Hub::new(Keys::new("t"), Metrics::new().unwrap()).0
    }

    fn socket(hub: &Hub, user_id: i64, name: &str) -> (ConnId, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(8);
        (hub.register(user_id, name, "tag", tx), rx)
    }

    /// (channel, wanted) of what the subscriber would change now.
    fn dirty(hub: &Hub) -> Vec<(String, bool)> {
        let mut changes: Vec<(String, bool)> = hub
            .take_dirty()
            .into_iter()
            .map(|c| (c.channel, c.wanted))
            .collect();
        changes.sort();
        changes
    }

    fn text(rx: &mut mpsc::Receiver<Outbound>) -> Option<String> {
        match rx.try_recv() {
            Ok(Outbound::Text(t)) => Some(t.to_string()),
            _ => None,
        }
    }

    #[test]
    fn a_user_channel_is_wanted_from_the_first_socket_to_the_last() {
        let hub = hub();
        let (a, _ra) = socket(&hub, 1, "ann");
        assert_eq!(dirty(&hub), vec![("t:u:1".to_owned(), true)]);
        let (b, _rb) = socket(&hub, 1, "ann");
        assert!(dirty(&hub).is_empty(), "a second socket changes nothing");
        hub.unregister(a);
        assert!(dirty(&hub).is_empty());
        assert!(hub.is_connected(1));
        hub.unregister(b);
        assert_eq!(dirty(&hub), vec![("t:u:1".to_owned(), false)]);
        assert!(!hub.is_connected(1));
    }

    #[test]
    fn presence_reaches_the_sockets_that_watch_the_user_only() {
        let hub = hub();
        let (a, mut ra) = socket(&hub, 1, "ann");
        let (_b, mut rb) = socket(&hub, 2, "ben");
        hub.watch(a, ["cat", "ann"]);
        hub.dispatch(
            "t:p:ann",
            br#"{"type":"presence","username":"ann","online":true}"#,
        );
        assert_eq!(text(&mut ra), None, "not one's own presence");
        let dirty = dirty(&hub);
        assert!(dirty.contains(&("t:p:cat".to_owned(), true)), "{dirty:?}");
        hub.dispatch(
            "t:p:cat",
            br#"{"type":"presence","username":"cat","online":true}"#,
        );
        assert!(text(&mut ra).is_some_and(|t| t.contains("cat")));
        assert_eq!(text(&mut rb), None);
    }

    #[test]
    fn a_message_goes_to_every_socket_of_the_user_and_follows_the_peer() {
        let hub = hub();
        let (a1, mut r1) = socket(&hub, 1, "ann");
        let (_a2, mut r2) = socket(&hub, 1, "ann");
        dirty(&hub);
        let frame = serde_json::json!({"type": "typing", "from": "dan"});
        let event =
            serde_json::to_vec(&UserEvent::frame(&frame, Some("dan".into()), None)).unwrap();
        hub.dispatch("t:u:1", &event);
        let got = text(&mut r1).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&got).unwrap(),
            frame
        );
        assert_eq!(text(&mut r2), Some(got));
        assert_eq!(dirty(&hub), vec![("t:p:dan".to_owned(), true)]);
        hub.unregister(a1);
        hub.dispatch("t:u:1", &event);
        assert!(text(&mut r2).is_some(), "the other socket still gets it");
    }

    #[test]
    fn sockets_listing_everyone_share_one_pattern_subscription() {
        let hub = hub();
        let (a, mut ra) = socket(&hub, 1, "ann");
        let (b, mut rb) = socket(&hub, 2, "ben");
        hub.watch(b, ["cat"]);
        dirty(&hub);
        hub.follow_everyone(a);
        assert_eq!(
            dirty(&hub),
            vec![("t:p:*".to_owned(), true), ("t:p:cat".to_owned(), false)],
            "the pattern replaces exact presence subscriptions"
        );
        hub.dispatch(
            "t:p:dan",
            br#"{"type":"presence","username":"dan","online":true}"#,
        );
        assert!(text(&mut ra).is_some_and(|t| t.contains("dan")));
        assert_eq!(text(&mut rb), None, "ben does not follow dan");
        hub.dispatch(
            "t:p:cat",
            br#"{"type":"presence","username":"cat","online":true}"#,
        );
        assert!(text(&mut ra).is_some());
        assert!(text(&mut rb).is_some(), "ben follows cat");
        hub.dispatch(
            "t:p:ann",
            br#"{"type":"presence","username":"ann","online":true}"#,
        );
        assert_eq!(text(&mut ra), None, "not one's own presence");
        hub.dispatch("t:p:x:u:1", b"{}");
        assert_eq!(text(&mut ra), None, "not a presence channel of ours");
        hub.unregister(a);
        assert_eq!(
            dirty(&hub),
            vec![
                ("t:p:*".to_owned(), false),
                ("t:p:cat".to_owned(), true),
                ("t:u:1".to_owned(), false)
            ]
        );
    }

    #[test]
    fn new_users_are_announced_to_sockets_listing_everyone() {
        let hub = hub();
        let (a, mut ra) = socket(&hub, 1, "ann");
        let (_b, mut rb) = socket(&hub, 2, "ben");
        hub.follow_everyone(a);
        hub.dispatch(
            "t:directory",
            br#"{"type":"presence","username":"eve","online":false}"#,
        );
        assert!(text(&mut ra).is_some_and(|t| t.contains("eve")));
        assert_eq!(text(&mut rb), None);
    }

    #[test]
    fn prefixes_are_matched_literally_in_the_pattern() {
        assert_eq!(glob_escape("a*b?[c]"), "a\\*b\\?\\[c\\]");
    }

    #[test]
    fn logout_closes_only_the_sockets_of_that_session() {
        let hub = hub();
        let (tx1, mut r1) = mpsc::channel(8);
        let (tx2, mut r2) = mpsc::channel(8);
        hub.register(1, "ann", "phone", tx1);
        hub.register(1, "ann", "laptop", tx2);
        let event = serde_json::to_vec(&UserEvent::<()>::logout("phone".into())).unwrap();
        hub.dispatch("t:u:1", &event);
        assert!(matches!(r1.try_recv(), Ok(Outbound::Close(1008, _))));
        assert!(r2.try_recv().is_err());
    }

    #[test]
    fn user_events_carry_the_frame_verbatim() {
        let frame = serde_json::json!({"type": "typing", "from": "bob"});
        let sent = UserEvent::frame(&frame, Some("bob".into()), Some(7));
        let wire = serde_json::to_string(&sent).unwrap();
        let got: UserEvent<&RawValue> = serde_json::from_str(&wire).unwrap();
        let raw = got.frame.unwrap().get();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(raw).unwrap(),
            frame
        );
        assert_eq!(got.peer.as_deref(), Some("bob"));
        assert_eq!(got.stored_at_us, Some(7));
        let wire = serde_json::to_string(&UserEvent::<()>::logout("t1".into())).unwrap();
        let got: UserEvent<&RawValue> = serde_json::from_str(&wire).unwrap();
        assert_eq!(got.logout.as_deref(), Some("t1"));
        assert!(got.frame.is_none());
    }
}
