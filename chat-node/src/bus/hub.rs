//! The node's local connections: who is connected here, and whose presence each socket
//! follows. Everything a pub/sub message needs to find its sockets lives in [`Registry`],
//! behind one mutex that is never held across an await. Each socket's [`Outbox`] bounds
//! what waits for it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytestring::ByteString;
use tokio::sync::{mpsc, oneshot, Notify};

use super::channel::{Channel, Channels};
use super::interest::{self, Demand, Interest, SubChange};
use super::outbox::{Closing, Frame, Outbox};
use crate::metrics::Metrics;
use crate::redis_store::Keys;

pub type ConnId = u64;

/// How long a new socket waits for its subscriptions before giving up.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The user already has the most sockets the node allows one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many sockets for one user")]
pub struct TooManySockets;

pub(super) struct Conn {
    pub(super) user_id: i64,
    pub(super) username: String,
    pub(super) session_tag: String,
    pub(super) outbox: Outbox,
    /// Users whose presence this socket follows, besides everyone's when it is in
    /// `Registry::everyone`.
    pub(super) watching: HashSet<String>,
}

#[derive(Default)]
pub(super) struct Registry {
    pub(super) conns: HashMap<ConnId, Conn>,
    pub(super) by_user: HashMap<i64, HashSet<ConnId>>,
    pub(super) watchers: HashMap<String, HashSet<ConnId>>,
    /// Sockets whose `updateUsers` listed the whole directory: they follow every presence
    /// change (one pattern subscription for the node) rather than a set per socket, which
    /// would cost sockets × users memory.
    pub(super) everyone: HashSet<ConnId>,
    pub(super) interest: Interest,
}

impl Demand for Registry {
    fn has_user(&self, user_id: i64) -> bool {
        self.by_user.contains_key(&user_id)
    }

    fn is_watched(&self, username: &str) -> bool {
        self.watchers.contains_key(username)
    }

    fn follows_everyone(&self) -> bool {
        !self.everyone.is_empty()
    }
}

impl Registry {
    pub(super) fn everyone_toggled(&mut self) {
        self.interest.everyone_toggled(self.watchers.keys());
    }

    /// Queues `text` for each socket; returns how many took it. A socket whose outbox is
    /// full is closing (its outbox asked it to) rather than slowing everyone down.
    pub(super) fn broadcast(&self, ids: &[ConnId], text: &ByteString) -> usize {
        let mut delivered = 0;
        for id in ids {
            let Some(conn) = self.conns.get(id) else {
                continue;
            };
            if conn.outbox.push(Frame::Text(text.clone())) {
                delivered += 1;
            }
        }
        delivered
    }

    /// Makes socket `id` follow `name`'s presence; true when the node must subscribe.
    pub(super) fn add_watch(&mut self, id: ConnId, name: &str) -> bool {
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
            self.interest.mark(Channel::Presence(name.to_owned()));
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
    registry: Mutex<Registry>,
    channels: Channels,
    next_id: AtomicU64,
    /// Wakes the subscriber when the wanted subscriptions may have changed.
    changed: Notify,
    flush_tx: mpsc::UnboundedSender<oneshot::Sender<()>>,
    metrics: Metrics,
}

/// The subscriber's end of [`Hub::flush`].
pub type FlushRequests = mpsc::UnboundedReceiver<oneshot::Sender<()>>;

impl Hub {
    pub fn new(keys: Keys, metrics: Metrics) -> (Self, FlushRequests) {
        let (flush_tx, flush_rx) = mpsc::unbounded_channel();
        let hub = Self {
            inner: Arc::new(HubInner {
                registry: Mutex::new(Registry::default()),
                channels: Channels::new(keys.prefix()),
                next_id: AtomicU64::new(1),
                changed: Notify::new(),
                flush_tx,
                metrics,
            }),
        };
        (hub, flush_rx)
    }

    pub(super) fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding this lock would be a bug in the few lines below; the map
        // stays consistent at every await-free step, so keep serving.
        self.inner
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn channels(&self) -> &Channels {
        &self.inner.channels
    }

    pub(super) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Wakes the subscriber to apply what [`Interest`] collected.
    pub(super) fn notify_changed(&self) {
        self.inner.changed.notify_one();
    }

    pub(super) async fn changed(&self) {
        self.inner.changed.notified().await;
    }

    /// Adds a socket unless its user already has `max_per_user` on this node.
    pub fn register(
        &self,
        user_id: i64,
        username: &str,
        session_tag: &str,
        outbox: Outbox,
        max_per_user: usize,
    ) -> Result<ConnId, TooManySockets> {
        let mut reg = self.registry();
        if reg.by_user.get(&user_id).map_or(0, HashSet::len) >= max_per_user {
            return Err(TooManySockets);
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        reg.conns.insert(
            id,
            Conn {
                user_id,
                username: username.to_owned(),
                session_tag: session_tag.to_owned(),
                outbox,
                watching: HashSet::new(),
            },
        );
        let conns = reg.by_user.entry(user_id).or_default();
        conns.insert(id);
        if conns.len() == 1 {
            reg.interest.mark(Channel::User(user_id));
        }
        let users = reg.by_user.len();
        drop(reg);
        self.inner.metrics.connected_users.set(users as i64);
        self.notify_changed();
        Ok(id)
    }

    pub fn unregister(&self, id: ConnId) {
        let mut reg = self.registry();
        let Some(conn) = reg.conns.remove(&id) else {
            return;
        };
        if reg.everyone.remove(&id) && reg.everyone.is_empty() {
            reg.everyone_toggled();
        }
        for name in &conn.watching {
            if let Some(set) = reg.watchers.get_mut(name) {
                set.remove(&id);
                if set.is_empty() {
                    reg.watchers.remove(name);
                    reg.interest.mark(Channel::Presence(name.clone()));
                }
            }
        }
        if let Some(set) = reg.by_user.get_mut(&conn.user_id) {
            set.remove(&id);
            if set.is_empty() {
                reg.by_user.remove(&conn.user_id);
                reg.interest.mark(Channel::User(conn.user_id));
            }
        }
        let users = reg.by_user.len();
        drop(reg);
        self.inner.metrics.connected_users.set(users as i64);
        self.notify_changed();
    }

    /// The socket now receives presence changes of these users.
    pub fn watch<'a>(&self, id: ConnId, usernames: impl IntoIterator<Item = &'a str>) {
        let mut reg = self.registry();
        let mut changed = false;
        for name in usernames {
            changed |= reg.add_watch(id, name);
        }
        drop(reg);
        if changed {
            self.notify_changed();
        }
    }

    /// The socket listed the whole directory: it follows every presence change, and
    /// users who register later are announced to it.
    pub fn follow_everyone(&self, id: ConnId) {
        let mut reg = self.registry();
        if !reg.conns.contains_key(&id) {
            return;
        }
        let first = reg.everyone.is_empty();
        reg.everyone.insert(id);
        if first {
            reg.everyone_toggled();
            drop(reg);
            self.notify_changed();
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
        self.registry().by_user.contains_key(&user_id)
    }

    /// One name per user with a socket here (`by_user` holds each user once).
    pub fn local_users(&self) -> Vec<String> {
        let reg = self.registry();
        reg.by_user
            .values()
            .filter_map(|ids| ids.iter().next())
            .filter_map(|id| reg.conns.get(id).map(|c| c.username.clone()))
            .collect()
    }

    /// The subscription changes since the last call.
    pub(super) fn take_changes(&self) -> Vec<SubChange> {
        let mut reg = self.registry();
        let dirty = reg.interest.take();
        interest::changes(dirty, &*reg, self.channels())
    }

    /// Everything to subscribe to on a fresh subscriber connection.
    pub(super) fn all_wanted(&self) -> Vec<SubChange> {
        let mut reg = self.registry();
        reg.interest.clear();
        let candidates: Vec<Channel> = reg
            .by_user
            .keys()
            .map(|id| Channel::User(*id))
            .chain(reg.watchers.keys().map(|n| Channel::Presence(n.clone())))
            .collect();
        interest::all_wanted(candidates, &*reg, self.channels())
    }

    /// Asks every socket to close, e.g. when deliveries may have been missed.
    pub fn close_all(&self, closing: Closing) {
        let reg = self.registry();
        for conn in reg.conns.values() {
            conn.outbox.request_close(closing);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub fn hub() -> Hub {
        Hub::new(Keys::new("t"), Metrics::new().unwrap()).0
    }

    /// A registered socket whose first frame went out, so its outbox hands on what comes.
    pub fn socket(hub: &Hub, user_id: i64, name: &str) -> (ConnId, Outbox) {
        let outbox = open_outbox(1024);
        let id = hub
            .register(user_id, name, "tag", outbox.clone(), 10)
            .unwrap();
        (id, outbox)
    }

    /// (channel, wanted) of what the subscriber would change now.
    pub fn dirty(hub: &Hub) -> Vec<(String, bool)> {
        let mut changes: Vec<(String, bool)> = hub
            .take_changes()
            .into_iter()
            .map(|c| (c.channel, c.wanted))
            .collect();
        changes.sort();
        changes
    }

    pub fn open_outbox(limit: usize) -> Outbox {
        let outbox = Outbox::new(limit);
        outbox.open(Frame::Ping);
        assert!(matches!(
            outbox.poll_take(&mut std::task::Context::from_waker(std::task::Waker::noop())),
            std::task::Poll::Ready(Some(Frame::Ping))
        ));
        outbox
    }

    /// The next frame waiting in `outbox`, if it is text.
    pub fn text(outbox: &Outbox) -> Option<String> {
        let waker = std::task::Waker::noop();
        match outbox.poll_take(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(Some(Frame::Text(t))) => Some(t.to_string()),
            _ => None,
        }
    }

    #[test]
    fn a_user_gets_at_most_the_allowed_sockets() {
        let hub = hub();
        let outbox = Outbox::new(10);
        assert!(hub.register(1, "ann", "t", outbox.clone(), 2).is_ok());
        let second = hub.register(1, "ann", "t", outbox.clone(), 2).unwrap();
        assert_eq!(
            hub.register(1, "ann", "t", outbox.clone(), 2),
            Err(TooManySockets)
        );
        assert!(hub.register(2, "ben", "t", outbox.clone(), 2).is_ok());
        hub.unregister(second);
        assert!(hub.register(1, "ann", "t", outbox, 2).is_ok());
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
    fn local_users_lists_each_user_once() {
        let hub = hub();
        let _a1 = socket(&hub, 1, "ann");
        let _a2 = socket(&hub, 1, "ann");
        let _b = socket(&hub, 2, "ben");
        let mut users = hub.local_users();
        users.sort();
        assert_eq!(users, ["ann", "ben"]);
    }
}
