//! The node's local connections: who is connected here, and whose presence each socket
//! follows. Everything a pub/sub message needs to find its sockets lives in [`Registry`],
//! behind one mutex that is never held across an await. Each socket's [`Outbox`] bounds
//! what waits for it.
//!
//! Users are ids; a username is kept once per connected user, not per socket. Presence is
//! routed from one index, never by scanning sockets: sockets that listed the whole
//! directory ([`Follows::Everyone`]), sockets grouped by the shared [`Head`] they listed
//! from and how far into it (one entry per socket, whatever the directory's size), and a
//! map from a user id to the sockets following that user besides (conversation peers).
//!
//! The registry also keeps the node's view of room membership, for its connected users
//! only: which rooms each has, and which local users each room has. A room's channel is
//! wanted while it has a local member; membership changes published on that channel keep
//! the view current on every node at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytestring::ByteString;
use chat_common::protocol::DIRECTORY_LIMIT;
use tokio::sync::{mpsc, oneshot, Notify};

use super::channel::{Channel, Channels};
use super::directory::Head;
use super::interest::{self, Demand, Interest, SubChange};
use super::outbox::{Closing, Frame, Outbox, Pushed};
use crate::metrics::Metrics;
use crate::redis_store::Keys;
use crate::storage::users::User;

pub type ConnId = u64;

/// How long a new socket waits for its subscriptions before giving up.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The user already has the most sockets the node allows one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many sockets for one user")]
pub struct TooManySockets;

/// Whose presence a socket follows, besides its own peers.
pub(super) enum Follows {
    /// Not set up yet.
    Nothing,
    /// Everyone: its `updateUsers` listed the whole directory.
    Everyone,
    /// The first `cutoff` users of the head it listed from.
    Head { head: Arc<Head>, cutoff: usize },
}

pub(super) struct Conn {
    pub(super) user_id: i64,
    pub(super) session_tag: Box<str>,
    pub(super) outbox: Outbox,
    pub(super) follows: Follows,
    /// Users followed outside `follows` (conversation peers), sorted.
    pub(super) peers: Vec<i64>,
}

impl Conn {
    /// Whether `follows` already takes in `user_id`'s presence.
    fn covers(&self, user_id: i64) -> bool {
        match &self.follows {
            Follows::Nothing => false,
            Follows::Everyone => true,
            Follows::Head { head, cutoff } => head.rank(user_id).is_some_and(|r| r < *cutoff),
        }
    }
}

/// A user with a socket here: the name once, for presence keys.
pub(super) struct LocalUser {
    pub(super) name: Arc<str>,
    pub(super) conns: Vec<ConnId>,
    /// The rooms the user belongs to.
    pub(super) rooms: Vec<i64>,
}

/// The sockets that listed from one head, by how many of its users they follow.
struct Group {
    head: Arc<Head>,
    by_cutoff: BTreeMap<usize, HashSet<ConnId>>,
}

impl Group {
    /// How far into the head some socket of the group follows.
    fn reach(&self) -> usize {
        self.by_cutoff.keys().next_back().copied().unwrap_or(0)
    }
}

#[derive(Default)]
pub(super) struct Registry {
    pub(super) conns: HashMap<ConnId, Conn>,
    pub(super) users: HashMap<i64, LocalUser>,
    /// Sockets following everyone: one set rather than a set of users per socket.
    pub(super) everyone: HashSet<ConnId>,
    /// Usually one: a new head is made only when a registration changes it, and a group
    /// goes with its last socket.
    groups: Vec<Group>,
    /// User id → sockets following that user outside their `follows`.
    watchers: HashMap<i64, Vec<ConnId>>,
    /// Room id → its members with a socket here.
    pub(super) rooms: HashMap<i64, Vec<i64>>,
    pub(super) interest: Interest,
    /// `room` frames of members just added here, held until the room's channel is
    /// confirmed subscribed: a client that loads the room's history on that frame then
    /// has every message of it (stored before, or delivered live after).
    pub(super) after_subscribe: Vec<(ConnId, ByteString)>,
}

impl Demand for Registry {
    fn has_user(&self, user_id: i64) -> bool {
        self.users.contains_key(&user_id)
    }

    fn has_room(&self, room_id: i64) -> bool {
        self.rooms.contains_key(&room_id)
    }

    fn is_watched(&self, user_id: i64) -> bool {
        self.watchers.contains_key(&user_id)
            || self
                .groups
                .iter()
                .any(|g| g.head.rank(user_id).is_some_and(|rank| rank < g.reach()))
    }

    fn follows_everyone(&self) -> bool {
        !self.everyone.is_empty()
    }
}

impl Registry {
    fn mark_head(interest: &mut Interest, head: &Head, ranks: Range<usize>) {
        for id in head.ids(ranks) {
            interest.mark(Channel::Presence(*id));
        }
    }

    /// Every user some socket follows by id, for a fresh subscription or the pattern
    /// turning on or off.
    fn followed(&self) -> impl Iterator<Item = i64> + '_ {
        self.watchers.keys().copied().chain(
            self.groups
                .iter()
                .flat_map(|g| g.head.ids(0..g.reach()).iter().copied()),
        )
    }

    fn everyone_toggled(&mut self) {
        let followed: Vec<i64> = self.followed().collect();
        self.interest.everyone_toggled(followed);
    }

    /// Queues `text` for each socket but those of `except` (a user is never told their
    /// own presence); returns how many took it. A socket whose outbox is full is closing
    /// (its outbox asked it to) rather than slowing everyone down.
    pub(super) fn broadcast(
        &self,
        ids: &[ConnId],
        text: &ByteString,
        except: Option<i64>,
    ) -> usize {
        let mut delivered = 0;
        for id in ids {
            let Some(conn) = self.conns.get(id) else {
                continue;
            };
            if Some(conn.user_id) == except {
                continue;
            }
            if conn.outbox.push(Frame::Text(text.clone())) {
                delivered += 1;
            }
        }
        delivered
    }

    /// Like [`Self::broadcast`], without waking the writers: returns the outboxes to
    /// nudge once the batch is due (`CHAT_PRESENCE_BATCH_MS`).
    pub(super) fn broadcast_later(
        &self,
        ids: &[ConnId],
        text: &ByteString,
        except: Option<i64>,
    ) -> Vec<Outbox> {
        let mut nudge = Vec::new();
        for id in ids {
            let Some(conn) = self.conns.get(id) else {
                continue;
            };
            if Some(conn.user_id) == except {
                continue;
            }
            if conn.outbox.push_later(Frame::Text(text.clone())) == Pushed::NeedsNudge {
                nudge.push(conn.outbox.clone());
            }
        }
        nudge
    }

    /// The sockets a presence change of `user_id` goes to (its own among them, for
    /// [`Self::broadcast`] to leave out). Each socket appears once: a socket's peers
    /// never overlap what its `follows` covers.
    pub(super) fn presence_recipients(&self, user_id: i64) -> Vec<ConnId> {
        let mut ids: Vec<ConnId> = self.everyone.iter().copied().collect();
        for group in &self.groups {
            if let Some(rank) = group.head.rank(user_id) {
                for (_, set) in group.by_cutoff.range(rank + 1..) {
                    ids.extend(set.iter().copied());
                }
            }
        }
        if let Some(watchers) = self.watchers.get(&user_id) {
            ids.extend(watchers.iter().copied());
        }
        ids
    }

    /// Makes socket `id` follow `user_id`'s presence; true when the node may need to
    /// subscribe.
    pub(super) fn add_watch(&mut self, id: ConnId, user_id: i64) -> bool {
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        // A socket's own user is online while it is open: no need to follow them.
        if conn.user_id == user_id || conn.covers(user_id) {
            return false;
        }
        let Err(at) = conn.peers.binary_search(&user_id) else {
            return false;
        };
        conn.peers.insert(at, user_id);
        let watchers = self.watchers.entry(user_id).or_default();
        watchers.push(id);
        if watchers.len() == 1 {
            self.interest.mark(Channel::Presence(user_id));
            return true;
        }
        false
    }

    /// Makes local user `user_id` a member of `room_id` in the node's view; true when
    /// that is new (false too for a user with no socket here).
    pub(super) fn join_room(&mut self, room_id: i64, user_id: i64) -> bool {
        let Some(local) = self.users.get_mut(&user_id) else {
            return false;
        };
        if local.rooms.contains(&room_id) {
            return false;
        }
        local.rooms.push(room_id);
        let members = self.rooms.entry(room_id).or_default();
        members.push(user_id);
        if members.len() == 1 {
            self.interest.mark(Channel::Room(room_id));
        }
        true
    }

    /// Takes `user_id` out of `room_id` in the node's view; true when they were in.
    pub(super) fn leave_room(&mut self, room_id: i64, user_id: i64) -> bool {
        let Some(local) = self.users.get_mut(&user_id) else {
            return false;
        };
        let before = local.rooms.len();
        local.rooms.retain(|r| *r != room_id);
        if local.rooms.len() == before {
            return false;
        }
        if let Some(members) = self.rooms.get_mut(&room_id) {
            members.retain(|u| *u != user_id);
            if members.is_empty() {
                self.rooms.remove(&room_id);
                self.interest.mark(Channel::Room(room_id));
            }
        }
        true
    }

    /// The sockets of `user_id` here.
    pub(super) fn conns_of(&self, user_id: i64) -> &[ConnId] {
        self.users.get(&user_id).map_or(&[], |u| &u.conns)
    }

    fn unwatch(&mut self, id: ConnId, user_id: i64) {
        if let Some(watchers) = self.watchers.get_mut(&user_id) {
            watchers.retain(|w| *w != id);
            if watchers.is_empty() {
                self.watchers.remove(&user_id);
                self.interest.mark(Channel::Presence(user_id));
            }
        }
    }

    fn join_group(&mut self, id: ConnId, head: &Arc<Head>, cutoff: usize) {
        let at = match self.groups.iter().position(|g| Arc::ptr_eq(&g.head, head)) {
            Some(at) => at,
            None => {
                self.groups.push(Group {
                    head: head.clone(),
                    by_cutoff: BTreeMap::new(),
                });
                self.groups.len() - 1
            }
        };
        let group = &mut self.groups[at];
        let reach = group.reach();
        group.by_cutoff.entry(cutoff).or_default().insert(id);
        if cutoff > reach {
            Self::mark_head(&mut self.interest, head, reach..cutoff);
        }
    }

    fn leave_group(&mut self, id: ConnId, head: &Arc<Head>, cutoff: usize) {
        let Some(at) = self.groups.iter().position(|g| Arc::ptr_eq(&g.head, head)) else {
            return;
        };
        let group = &mut self.groups[at];
        let reach = group.reach();
        if let Some(set) = group.by_cutoff.get_mut(&cutoff) {
            set.remove(&id);
            if set.is_empty() {
                group.by_cutoff.remove(&cutoff);
            }
        }
        let now = group.reach();
        if now < reach {
            Self::mark_head(&mut self.interest, head, now..reach);
        }
        if group.by_cutoff.is_empty() {
            self.groups.swap_remove(at);
        }
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
    head: Mutex<CachedHead>,
    /// Bumped by every new user announced (and a lost subscription, which may have missed
    /// some): a head loaded before the bump is stale.
    directory_generation: AtomicU64,
    /// One reload at a time; sockets arriving meanwhile wait for it.
    head_reload: tokio::sync::Mutex<()>,
    nudges: Mutex<Nudges>,
}

/// How long presence frames wait for their writer at least, so that changes arriving
/// together go out together.
pub const PRESENCE_DELAY: Duration = Duration::from_millis(50);

/// Outboxes holding presence frames their writer was not woken for.
struct Nudges {
    outboxes: Vec<Outbox>,
    due: Option<tokio::time::Instant>,
    /// Writers are woken for presence at most once per `batch`…
    batch: Duration,
    /// …counted from the last time.
    last: Option<tokio::time::Instant>,
}

#[derive(Default)]
struct CachedHead {
    head: Option<Arc<Head>>,
    generation: u64,
}

/// The subscriber's end of [`Hub::flush`].
pub type FlushRequests = mpsc::UnboundedReceiver<oneshot::Sender<()>>;

impl Hub {
    /// Presence frames wait [`PRESENCE_DELAY`] for their socket's writer, and in a storm
    /// of them (thousands of users coming online) up to `presence_batch`, so that each
    /// socket gets them in one write per `presence_batch` rather than one each.
    pub fn new(keys: Keys, metrics: Metrics, presence_batch: Duration) -> (Self, FlushRequests) {
        let (flush_tx, flush_rx) = mpsc::unbounded_channel();
        let hub = Self {
            inner: Arc::new(HubInner {
                registry: Mutex::new(Registry::default()),
                channels: Channels::new(keys.prefix()),
                next_id: AtomicU64::new(1),
                changed: Notify::new(),
                flush_tx,
                metrics,
                head: Mutex::new(CachedHead::default()),
                directory_generation: AtomicU64::new(1),
                head_reload: tokio::sync::Mutex::new(()),
                nudges: Mutex::new(Nudges {
                    outboxes: Vec::new(),
                    due: None,
                    batch: presence_batch,
                    last: None,
                }),
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

    fn nudges(&self) -> MutexGuard<'_, Nudges> {
        self.inner
            .nudges
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remembers outboxes to wake when the batch is due: [`PRESENCE_DELAY`] from now, or
    /// a whole batch after the last one if that is later. A lone change goes out after the
    /// short delay; a storm's changes go out once per batch.
    pub(super) fn nudge_later(&self, outboxes: Vec<Outbox>) {
        if outboxes.is_empty() {
            return;
        }
        let mut nudges = self.nudges();
        if nudges.due.is_none() {
            let soon = tokio::time::Instant::now() + PRESENCE_DELAY;
            let next = nudges.last.map(|last| last + nudges.batch);
            nudges.due = Some(next.map_or(soon, |next| next.max(soon)));
        }
        nudges.outboxes.extend(outboxes);
    }

    /// When the subscriber should call [`Self::nudge_all`], if anything waits.
    pub(super) fn nudge_due(&self) -> Option<tokio::time::Instant> {
        self.nudges().due
    }

    /// Wakes every writer that has presence frames waiting.
    pub(super) fn nudge_all(&self) {
        let outboxes = {
            let mut nudges = self.nudges();
            nudges.due = None;
            nudges.last = Some(tokio::time::Instant::now());
            std::mem::take(&mut nudges.outboxes)
        };
        for outbox in outboxes {
            outbox.nudge();
        }
    }

    /// Adds a socket unless its user already has `max_per_user` on this node.
    pub fn register(
        &self,
        user: &User,
        session_tag: &str,
        outbox: Outbox,
        max_per_user: usize,
    ) -> Result<ConnId, TooManySockets> {
        let mut reg = self.registry();
        let local = reg.users.get(&user.id);
        if local.map_or(0, |u| u.conns.len()) >= max_per_user {
            return Err(TooManySockets);
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        reg.conns.insert(
            id,
            Conn {
                user_id: user.id,
                session_tag: session_tag.into(),
                outbox,
                follows: Follows::Nothing,
                peers: Vec::new(),
            },
        );
        let local = reg.users.entry(user.id).or_insert_with(|| LocalUser {
            name: user.username.as_str().into(),
            conns: Vec::new(),
            rooms: Vec::new(),
        });
        local.conns.push(id);
        if local.conns.len() == 1 {
            reg.interest.mark(Channel::User(user.id));
        }
        let users = reg.users.len();
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
        match &conn.follows {
            Follows::Nothing => {}
            Follows::Everyone => {
                reg.everyone.remove(&id);
                if reg.everyone.is_empty() {
                    reg.everyone_toggled();
                }
            }
            Follows::Head { head, cutoff } => reg.leave_group(id, head, *cutoff),
        }
        for user_id in &conn.peers {
            reg.unwatch(id, *user_id);
        }
        if let Some(local) = reg.users.get_mut(&conn.user_id) {
            local.conns.retain(|c| *c != id);
            if local.conns.is_empty() {
                let rooms = std::mem::take(&mut local.rooms);
                for room_id in rooms {
                    if let Some(members) = reg.rooms.get_mut(&room_id) {
                        members.retain(|u| *u != conn.user_id);
                        if members.is_empty() {
                            reg.rooms.remove(&room_id);
                            reg.interest.mark(Channel::Room(room_id));
                        }
                    }
                }
                reg.users.remove(&conn.user_id);
                reg.interest.mark(Channel::User(conn.user_id));
            }
        }
        let users = reg.users.len();
        drop(reg);
        self.inner.metrics.connected_users.set(users as i64);
        self.notify_changed();
    }

    /// The socket now receives presence changes of these users.
    pub fn watch(&self, id: ConnId, user_ids: impl IntoIterator<Item = i64>) {
        let mut reg = self.registry();
        let mut changed = false;
        for user_id in user_ids {
            changed |= reg.add_watch(id, user_id);
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
        let Some(conn) = reg.conns.get_mut(&id) else {
            return;
        };
        if !matches!(conn.follows, Follows::Nothing) {
            return;
        }
        conn.follows = Follows::Everyone;
        let first = reg.everyone.is_empty();
        reg.everyone.insert(id);
        if first {
            reg.everyone_toggled();
            drop(reg);
            self.notify_changed();
        }
    }

    /// The socket listed the first `cutoff` users of `head`, and `peers` besides.
    pub fn follow_head(&self, id: ConnId, head: &Arc<Head>, cutoff: usize, peers: &[i64]) {
        let mut reg = self.registry();
        let Some(conn) = reg.conns.get_mut(&id) else {
            return;
        };
        if !matches!(conn.follows, Follows::Nothing) {
            return;
        }
        conn.follows = Follows::Head {
            head: head.clone(),
            cutoff,
        };
        reg.join_group(id, head, cutoff);
        for user_id in peers {
            reg.add_watch(id, *user_id);
        }
        drop(reg);
        self.notify_changed();
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

    /// The user (connected here) belongs to these rooms: the node follows their channels.
    /// [`Self::flush`] waits for the subscriptions.
    pub fn join_rooms(&self, user_id: i64, rooms: &[i64]) {
        let mut reg = self.registry();
        for room_id in rooms {
            reg.join_room(*room_id, user_id);
        }
        drop(reg);
        self.notify_changed();
    }

    /// The user is no longer in these rooms (found at set-up, after their channels were
    /// followed).
    pub fn leave_rooms(&self, user_id: i64, rooms: &[i64]) {
        let mut reg = self.registry();
        for room_id in rooms {
            reg.leave_room(*room_id, user_id);
        }
        drop(reg);
        self.notify_changed();
    }

    /// Whether the node's view has the (connected) user in the room.
    pub fn is_member(&self, user_id: i64, room_id: i64) -> bool {
        self.registry()
            .users
            .get(&user_id)
            .is_some_and(|u| u.rooms.contains(&room_id))
    }

    pub fn is_connected(&self, user_id: i64) -> bool {
        self.registry().users.contains_key(&user_id)
    }

    /// Each user with a socket here, once.
    pub fn local_users(&self) -> Vec<(i64, Arc<str>)> {
        self.registry()
            .users
            .iter()
            .map(|(id, u)| (*id, u.name.clone()))
            .collect()
    }

    /// Calls `f` with every socket's outbox, for the node's heartbeat.
    pub fn for_each_outbox(&self, mut f: impl FnMut(ConnId, &Outbox)) {
        for (id, conn) in &self.registry().conns {
            f(*id, &conn.outbox);
        }
    }

    /// The subscription changes since the last call.
    /// Queues what waited for the subscriptions just confirmed ([`Registry::after_subscribe`]).
    pub(super) fn release_after_subscribe(&self) {
        let mut reg = self.registry();
        for (id, text) in std::mem::take(&mut reg.after_subscribe) {
            if let Some(conn) = reg.conns.get(&id) {
                conn.outbox.push(Frame::Text(text));
            }
        }
    }

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
            .users
            .keys()
            .map(|id| Channel::User(*id))
            .chain(reg.rooms.keys().map(|id| Channel::Room(*id)))
            .chain(reg.followed().map(Channel::Presence))
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

    /// The directory's head as of the last announced user, loaded with `load` (the first
    /// `DIRECTORY_LIMIT + 1` users) when the cached one is stale. Sockets connecting
    /// together share one load.
    pub async fn head<E, F>(&self, load: impl FnOnce() -> F) -> Result<Arc<Head>, E>
    where
        F: Future<Output = Result<Vec<User>, E>>,
    {
        if let Some(head) = self.fresh_head() {
            return Ok(head);
        }
        let _one = self.inner.head_reload.lock().await;
        if let Some(head) = self.fresh_head() {
            return Ok(head);
        }
        let generation = self.inner.directory_generation.load(Ordering::SeqCst);
        let loaded = Head::new(load().await?, DIRECTORY_LIMIT);
        let mut cached = self
            .inner
            .head
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cached.generation = generation;
        // An unchanged head keeps its `Arc`, so sockets stay in one group.
        match &cached.head {
            Some(head) if head.same_as(&loaded) => Ok(head.clone()),
            _ => {
                let head = Arc::new(loaded);
                cached.head = Some(head.clone());
                Ok(head)
            }
        }
    }

    fn fresh_head(&self) -> Option<Arc<Head>> {
        let cached = self
            .inner
            .head
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.inner.directory_generation.load(Ordering::SeqCst);
        cached.head.clone().filter(|_| cached.generation == current)
    }

    /// A user registered, or announcements may have been missed: the next socket to
    /// connect reloads the head.
    pub(super) fn directory_changed(&self) {
        self.inner
            .directory_generation
            .fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub const PRESENCE_BATCH: Duration = Duration::from_secs(1);

    pub fn hub() -> Hub {
        Hub::new(Keys::new("t"), Metrics::new().unwrap(), PRESENCE_BATCH).0
    }

    pub fn user(id: i64, name: &str) -> User {
        User {
            id,
            username: name.to_owned(),
        }
    }

    /// A registered socket whose first frame went out, so its outbox hands on what comes.
    pub fn socket(hub: &Hub, user_id: i64, name: &str) -> (ConnId, Outbox) {
        let outbox = open_outbox(1024);
        let id = hub
            .register(&user(user_id, name), "tag", outbox.clone(), 10)
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
        let ann = user(1, "ann");
        assert!(hub.register(&ann, "t", outbox.clone(), 2).is_ok());
        let second = hub.register(&ann, "t", outbox.clone(), 2).unwrap();
        assert_eq!(
            hub.register(&ann, "t", outbox.clone(), 2),
            Err(TooManySockets)
        );
        assert!(hub
            .register(&user(2, "ben"), "t", outbox.clone(), 2)
            .is_ok());
        hub.unregister(second);
        assert!(hub.register(&ann, "t", outbox, 2).is_ok());
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
    fn a_room_channel_is_wanted_while_a_local_member_is_connected() {
        let hub = hub();
        let (a, _ra) = socket(&hub, 1, "ann");
        let (b, _rb) = socket(&hub, 2, "ben");
        dirty(&hub);
        hub.join_rooms(1, &[7]);
        hub.join_rooms(2, &[7]);
        assert_eq!(dirty(&hub), vec![("t:r:7".to_owned(), true)]);
        assert!(hub.is_member(1, 7) && !hub.is_member(1, 8));
        hub.unregister(a);
        assert_eq!(dirty(&hub), vec![("t:u:1".to_owned(), false)]);
        hub.unregister(b);
        assert_eq!(
            dirty(&hub),
            vec![("t:r:7".to_owned(), false), ("t:u:2".to_owned(), false)]
        );
    }

    #[test]
    fn local_users_lists_each_user_once() {
        let hub = hub();
        let _a1 = socket(&hub, 1, "ann");
        let _a2 = socket(&hub, 1, "ann");
        let _b = socket(&hub, 2, "ben");
        let mut users = hub.local_users();
        users.sort();
        assert_eq!(users, [(1, "ann".into()), (2, "ben".into())]);
    }

    /// What one socket adds to the registry besides its map entries; docs/benchmarks.md
    /// quotes it.
    #[test]
    fn a_socket_costs_the_registry_a_few_words() {
        let conn = std::mem::size_of::<Conn>();
        println!("registry entry per socket: {conn} bytes");
        assert!(conn <= 96, "Conn: {conn} bytes");
    }

    #[tokio::test]
    async fn the_head_is_loaded_once_until_a_new_user_is_announced() {
        let hub = hub();
        let loads = std::sync::atomic::AtomicUsize::new(0);
        let load = || async {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(vec![user(1, "ann"), user(2, "ben")])
        };
        let first = hub.head(load).await.unwrap();
        let again = hub.head(load).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        hub.directory_changed();
        let reloaded = hub.head(load).await.unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        assert!(
            Arc::ptr_eq(&first, &reloaded),
            "an unchanged head stays one Arc"
        );
        hub.directory_changed();
        let grown = hub
            .head(|| async { Ok::<_, ()>(vec![user(1, "ann"), user(3, "bea"), user(2, "ben")]) })
            .await
            .unwrap();
        assert!(!Arc::ptr_eq(&first, &grown));
        assert_eq!(grown.rank(3), Some(1));
    }
}
