//! Which channels the node must be subscribed to, derived from the registry. Changes are
//! collected as they happen (a user's first socket, a new watch) and handed to the
//! subscriber in batches, so a burst of connects costs one SUBSCRIBE.

use std::collections::HashSet;

use super::channel::{Channel, Channels};

/// What the local sockets need, as the registry knows it.
pub(super) trait Demand {
    fn has_user(&self, user_id: i64) -> bool;
    /// Some local user is a member of this room.
    fn has_room(&self, room_id: i64) -> bool;
    /// Some socket follows this user's presence by id.
    fn is_watched(&self, user_id: i64) -> bool;
    /// Some socket follows every presence change.
    fn follows_everyone(&self) -> bool;
}

/// Channels whose wanted state may have changed since the subscriber last looked.
#[derive(Default)]
pub(super) struct Interest {
    dirty: HashSet<Channel>,
}

/// One subscription to add or drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SubChange {
    pub(super) channel: String,
    pub(super) pattern: bool,
    pub(super) wanted: bool,
}

fn wanted(channel: &Channel, demand: &impl Demand) -> bool {
    match channel {
        Channel::User(id) => demand.has_user(*id),
        Channel::Room(id) => demand.has_room(*id),
        // The pattern covers every presence channel while it is on; an exact
        // subscription beside it would deliver each change twice.
        Channel::Presence(id) => !demand.follows_everyone() && demand.is_watched(*id),
        Channel::AllPresence => demand.follows_everyone(),
        Channel::Directory => true,
    }
}

fn change(channels: &Channels, channel: &Channel, wanted: bool) -> SubChange {
    SubChange {
        channel: channels.name(channel),
        pattern: channel.is_pattern(),
        wanted,
    }
}

impl Interest {
    pub(super) fn mark(&mut self, channel: Channel) {
        self.dirty.insert(channel);
    }

    /// The pattern subscription turns on or off: every exact presence subscription
    /// flips the other way.
    pub(super) fn everyone_toggled(&mut self, followed: impl IntoIterator<Item = i64>) {
        self.dirty
            .extend(followed.into_iter().map(Channel::Presence));
        self.mark(Channel::AllPresence);
    }

    /// Takes what changed since the last call.
    pub(super) fn take(&mut self) -> Vec<Channel> {
        self.dirty.drain().collect()
    }

    /// Forgets pending changes: a fresh connection subscribes to everything anyway.
    pub(super) fn clear(&mut self) {
        self.dirty.clear();
    }
}

/// The subscription commands for channels that may have changed.
pub(super) fn changes(
    dirty: Vec<Channel>,
    demand: &impl Demand,
    channels: &Channels,
) -> Vec<SubChange> {
    dirty
        .into_iter()
        .map(|channel| {
            let wanted = wanted(&channel, demand);
            change(channels, &channel, wanted)
        })
        .collect()
}

/// Everything to subscribe to on a fresh subscriber connection, among `candidates` plus
/// the node-wide channels.
pub(super) fn all_wanted(
    candidates: Vec<Channel>,
    demand: &impl Demand,
    channels: &Channels,
) -> Vec<SubChange> {
    candidates
        .into_iter()
        .chain([Channel::AllPresence, Channel::Directory])
        .filter(|channel| wanted(channel, demand))
        .map(|channel| change(channels, &channel, true))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::directory::{listing, Head};
    use super::super::hub::tests::{dirty, hub, socket, user};
    use super::*;

    struct Fixed {
        users: Vec<i64>,
        watched: Vec<i64>,
        everyone: bool,
    }

    impl Demand for Fixed {
        fn has_user(&self, user_id: i64) -> bool {
            self.users.contains(&user_id)
        }
        fn has_room(&self, _: i64) -> bool {
            false
        }
        fn is_watched(&self, user_id: i64) -> bool {
            self.watched.contains(&user_id)
        }
        fn follows_everyone(&self) -> bool {
            self.everyone
        }
    }

    #[test]
    fn exact_presence_subscriptions_give_way_to_the_pattern() {
        let channels = Channels::new("t");
        let mut demand = Fixed {
            users: vec![1],
            watched: vec![3],
            everyone: false,
        };
        let dirty = vec![
            Channel::User(1),
            Channel::User(2),
            Channel::Presence(3),
            Channel::AllPresence,
        ];
        let wanted: Vec<bool> = changes(dirty.clone(), &demand, &channels)
            .iter()
            .map(|c| c.wanted)
            .collect();
        assert_eq!(wanted, [true, false, true, false]);
        demand.everyone = true;
        let wanted: Vec<bool> = changes(dirty, &demand, &channels)
            .iter()
            .map(|c| c.wanted)
            .collect();
        assert_eq!(wanted, [true, false, false, true]);
    }

    #[test]
    fn sockets_listing_everyone_share_one_pattern_subscription() {
        let hub = hub();
        let (a, _ra) = socket(&hub, 1, "ann");
        let (b, _rb) = socket(&hub, 2, "ben");
        hub.watch(b, [3]);
        dirty(&hub);
        hub.follow_everyone(a);
        assert_eq!(
            dirty(&hub),
            vec![("t:p:*".to_owned(), true), ("t:p:3".to_owned(), false)],
            "the pattern replaces exact presence subscriptions"
        );
        hub.unregister(a);
        assert_eq!(
            dirty(&hub),
            vec![
                ("t:p:*".to_owned(), false),
                ("t:p:3".to_owned(), true),
                ("t:u:1".to_owned(), false)
            ]
        );
    }

    #[test]
    fn a_fresh_connection_subscribes_to_everything_wanted() {
        let hub = hub();
        let (a, _ra) = socket(&hub, 1, "ann");
        hub.watch(a, [3]);
        let mut all: Vec<(String, bool)> = hub
            .all_wanted()
            .into_iter()
            .map(|c| (c.channel, c.pattern))
            .collect();
        all.sort();
        assert_eq!(
            all,
            vec![
                ("t:directory".to_owned(), false),
                ("t:p:3".to_owned(), false),
                ("t:u:1".to_owned(), false)
            ]
        );
        assert!(dirty(&hub).is_empty(), "nothing left to apply");
    }

    #[test]
    fn a_head_is_subscribed_as_far_as_its_furthest_socket_follows() {
        let hub = hub();
        let directory: Vec<_> = (1..=5).map(|id| user(id, &format!("u{id}"))).collect();
        let head = Arc::new(Head::new(directory.clone(), 4));
        let (a, _ra) = socket(&hub, 1, "u1");
        let (b, _rb) = socket(&hub, 2, "u2");
        dirty(&hub);
        // b has a conversation with u5: it lists u5, then u1 u2 u3.
        let short = listing(&head, vec![directory[4].clone()], 4);
        hub.follow_head(b, &head, short.cutoff, &short.beyond);
        assert_eq!(
            dirty(&hub),
            vec![
                ("t:p:1".to_owned(), true),
                ("t:p:2".to_owned(), true),
                ("t:p:3".to_owned(), true),
                ("t:p:5".to_owned(), true)
            ]
        );
        hub.follow_head(a, &head, 4, &[]);
        assert_eq!(dirty(&hub), vec![("t:p:4".to_owned(), true)]);
        hub.unregister(a);
        assert_eq!(
            dirty(&hub),
            vec![("t:p:4".to_owned(), false), ("t:u:1".to_owned(), false)]
        );
        hub.unregister(b);
        let gone = dirty(&hub);
        assert!(gone.iter().all(|(_, wanted)| !wanted), "{gone:?}");
        assert_eq!(gone.len(), 5, "u1 u2 u3 u5 and b's user channel: {gone:?}");
    }
}
