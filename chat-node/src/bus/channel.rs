//! Channel names, formatted and parsed in this one place: the publishing side
//! ([`super::publish`], the presence scripts) and the subscribing side
//! ([`super::subscriber`], [`super::dispatch`]) cannot disagree on the contract.
//!
//! - `<prefix>:u:<user id>`: messages, typing and logout events for one user.
//! - `<prefix>:p:<user id>`: that user's `presence` frames.
//! - `<prefix>:r:<room id>`: a room's messages, typing and membership changes.
//! - `<prefix>:directory`: new users, announced to sockets that list everyone.

use std::sync::Arc;

/// A channel the node can subscribe to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Channel {
    User(i64),
    Presence(i64),
    Room(i64),
    /// Every presence channel, by pattern: wanted while a socket lists the whole directory.
    AllPresence,
    Directory,
}

impl Channel {
    pub fn is_pattern(&self) -> bool {
        matches!(self, Self::AllPresence)
    }
}

/// Names under one deployment's prefix; cheap to clone.
#[derive(Debug, Clone)]
pub struct Channels {
    prefix: Arc<str>,
}

impl Channels {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn name(&self, channel: &Channel) -> String {
        match channel {
            Channel::User(id) => self.user(*id),
            Channel::Presence(id) => self.presence(*id),
            Channel::Room(id) => self.room(*id),
            Channel::AllPresence => format!("{}*", glob_escape(&self.presence_prefix())),
            Channel::Directory => self.directory(),
        }
    }

    pub fn user(&self, user_id: i64) -> String {
        format!("{}:u:{user_id}", self.prefix)
    }

    pub fn room(&self, room_id: i64) -> String {
        format!("{}:r:{room_id}", self.prefix)
    }

    pub fn presence(&self, user_id: i64) -> String {
        format!("{}{user_id}", self.presence_prefix())
    }

    /// What the presence scripts append a user id to.
    pub fn presence_prefix(&self) -> String {
        format!("{}:p:", self.prefix)
    }

    pub fn directory(&self) -> String {
        format!("{}:directory", self.prefix)
    }

    /// The channel a pub/sub message arrived on; `None` for another deployment's.
    pub fn parse(&self, name: &str) -> Option<Channel> {
        let rest = name.strip_prefix(&*self.prefix)?.strip_prefix(':')?;
        if rest == "directory" {
            return Some(Channel::Directory);
        }
        if let Some(id) = rest.strip_prefix("u:") {
            return id.parse().ok().map(Channel::User);
        }
        if let Some(id) = rest.strip_prefix("r:") {
            return id.parse().ok().map(Channel::Room);
        }
        // Anything but an id is another deployment's channel that happens to match the
        // pattern.
        rest.strip_prefix("p:")
            .and_then(|id| id.parse().ok())
            .map(Channel::Presence)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_channel_parses_back_from_its_name() {
        let channels = Channels::new("t");
        for channel in [
            Channel::User(42),
            Channel::Presence(7),
            Channel::Room(3),
            Channel::Directory,
        ] {
            assert_eq!(channels.parse(&channels.name(&channel)), Some(channel));
        }
    }

    #[test]
    fn other_deployments_channels_are_not_ours() {
        let channels = Channels::new("t");
        assert_eq!(channels.parse("t2:u:1"), None);
        assert_eq!(channels.parse("t:p:x:u:1"), None);
        assert_eq!(channels.parse("t:u:abc"), None);
        assert_eq!(channels.parse("t:r:"), None);
        assert_eq!(channels.parse("t:p:"), None);
        assert_eq!(channels.parse("t:p:ann"), None);
    }

    #[test]
    fn prefixes_are_matched_literally_in_the_pattern() {
        assert_eq!(glob_escape("a*b?[c]"), "a\\*b\\?\\[c\\]");
        assert_eq!(Channels::new("a*").name(&Channel::AllPresence), "a\\*:p:*");
    }
}
