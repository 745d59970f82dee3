//! Which channels the node must be subscribed to, derived from the registry. Changes are
//! collected as they happen (a user's first socket, a new watch) and handed to the
//! subscriber in batches, so a burst of connects costs one SUBSCRIBE.

use std::collections::HashSet;

use super::channel::{Channel, Channels};

/// What the local sockets need, as the registry knows it.
pub(super) trait Demand {
    fn has_user(&self, user_id: i64) -> bool;
    /// Some socket watches this user's presence by name.
    fn is_watched(&self, username: &str) -> bool;
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
        // The pattern covers every presence channel while it is on; an exact
        // subscription beside it would deliver each change twice.
        Channel::Presence(name) => !demand.follows_everyone() && demand.is_watched(name),
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
    pub(super) fn everyone_toggled<'a>(&mut self, watched: impl Iterator<Item = &'a String>) {
        self.dirty
            .extend(watched.map(|name| Channel::Presence(name.clone())));
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
    use super::super::hub::tests::{dirty, hub, socket};
    use super::*;

    struct Fixed {
        users: Vec<i64>,
        watched: Vec<&'static str>,
        everyone: bool,
    }

    impl Demand for Fixed {
        fn has_user(&self, user_id: i64) -> bool {
            self.users.contains(&user_id)
        }
        fn is_watched(&self, username: &str) -> bool {
            self.watched.contains(&username)
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
            watched: vec!["cat"],
            everyone: false,
        };
        let dirty = vec![
            Channel::User(1),
            Channel::User(2),
            Channel::Presence("cat".into()),
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
        hub.watch(b, ["cat"]);
        dirty(&hub);
        hub.follow_everyone(a);
        assert_eq!(
            dirty(&hub),
            vec![("t:p:*".to_owned(), true), ("t:p:cat".to_owned(), false)],
            "the pattern replaces exact presence subscriptions"
        );
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
    fn a_fresh_connection_subscribes_to_everything_wanted() {
        let hub = hub();
        let (a, _ra) = socket(&hub, 1, "ann");
        hub.watch(a, ["cat"]);
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
                ("t:p:cat".to_owned(), false),
                ("t:u:1".to_owned(), false)
            ]
        );
        assert!(dirty(&hub).is_empty(), "nothing left to apply");
    }
}
