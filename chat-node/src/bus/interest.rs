//! Which channels the node must be subscribed to, derived from the registry. Changes are
//! collected as they happen (a user's first socket, a new watch) and handed to the
//! subscriber in batches, so a burst of connects costs one SUBSCRIBE.

use std::collections::HashSet;

use super::channel::Channel;
use super::hub::{Hub, Registry};

/// Channels whose wanted state may have changed since the subscriber last looked.
#[derive(Default)]
pub(super) struct Interest {
    dirty: HashSet<Channel>,
}

impl Interest {
    pub(super) fn mark(&mut self, channel: Channel) {
        self.dirty.insert(channel);
    }
}

/// One subscription to add or drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SubChange {
    pub(super) channel: String,
    pub(super) pattern: bool,
    pub(super) wanted: bool,
}

impl Registry {
    fn wanted(&self, channel: &Channel) -> bool {
        match channel {
            Channel::User(id) => self.by_user.contains_key(id),
            // The pattern covers every presence channel while it is on; an exact
            // subscription beside it would deliver each change twice.
            Channel::Presence(name) => self.everyone.is_empty() && self.watchers.contains_key(name),
            Channel::AllPresence => !self.everyone.is_empty(),
            Channel::Directory => true,
        }
    }

    /// The pattern subscription turns on or off: every exact presence subscription
    /// flips the other way.
    pub(super) fn everyone_toggled(&mut self) {
        let names: Vec<Channel> = self
            .watchers
            .keys()
            .map(|n| Channel::Presence(n.clone()))
            .collect();
        self.interest.dirty.extend(names);
        self.interest.mark(Channel::AllPresence);
    }
}

impl Hub {
    /// What changed since the last call.
    pub(super) fn take_changes(&self) -> Vec<SubChange> {
        let mut reg = self.registry();
        let dirty: Vec<Channel> = reg.interest.dirty.drain().collect();
        dirty
            .into_iter()
            .map(|channel| {
                let wanted = reg.wanted(&channel);
                self.change(&channel, wanted)
            })
            .collect()
    }

    /// Everything to subscribe to on a fresh subscriber connection.
    pub(super) fn all_wanted(&self) -> Vec<SubChange> {
        let mut reg = self.registry();
        reg.interest.dirty.clear();
        let users = reg.by_user.keys().map(|id| Channel::User(*id));
        let presence = reg.watchers.keys().map(|n| Channel::Presence(n.clone()));
        let all: Vec<Channel> = users
            .chain(presence)
            .chain([Channel::AllPresence, Channel::Directory])
            .collect();
        all.into_iter()
            .filter(|channel| reg.wanted(channel))
            .map(|channel| self.change(&channel, true))
            .collect()
    }

    fn change(&self, channel: &Channel, wanted: bool) -> SubChange {
        SubChange {
            channel: self.channels().name(channel),
            pattern: channel.is_pattern(),
            wanted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::hub::tests::{dirty, hub, socket};

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
