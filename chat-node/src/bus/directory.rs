//! The directory as a node lists it. Every socket's `updateUsers` starts from the same
//! first users by username, so the node loads them once into a [`Head`] that all its
//! sockets share (one `Arc`) and follow by rank, instead of each socket keeping its own
//! copy of up to 1000 names. What a socket lists besides (its conversation peers) is its
//! own: [`listing`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::storage::users::User;

/// The first users of the directory, in directory order, as the node loaded them. Never
/// changed once built: a new user makes a new `Head`, and sockets keep the one they
/// listed from.
#[derive(Debug)]
pub struct Head {
    ids: Vec<i64>,
    names: Vec<Arc<str>>,
    ranks: HashMap<i64, usize>,
    complete: bool,
}

impl Head {
    /// From the first `limit + 1` users in directory order: one past the limit tells
    /// whether everyone fits.
    pub fn new(mut users: Vec<User>, limit: usize) -> Self {
        let complete = users.len() <= limit;
        users.truncate(limit);
        let ranks = users.iter().enumerate().map(|(i, u)| (u.id, i)).collect();
        let (ids, names) = users
            .into_iter()
            .map(|u| (u.id, Arc::from(u.username)))
            .unzip();
        Self {
            ids,
            names,
            ranks,
            complete,
        }
    }

    /// Every user of the directory is in it.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    pub fn rank(&self, user_id: i64) -> Option<usize> {
        self.ranks.get(&user_id).copied()
    }

    /// The ids of the users ranked in `range`.
    pub fn ids(&self, range: std::ops::Range<usize>) -> &[i64] {
        let end = range.end.min(self.ids.len());
        self.ids.get(range.start.min(end)..end).unwrap_or_default()
    }

    /// Lists the same users in the same order, so a reload changed nothing.
    pub fn same_as(&self, other: &Head) -> bool {
        self.complete == other.complete && self.ids == other.ids
    }
}

/// What one socket's `updateUsers` lists, and how it follows their presence.
#[derive(Debug, PartialEq, Eq)]
pub struct Listing {
    pub names: Vec<Arc<str>>,
    /// The socket follows the head's first `cutoff` users…
    pub cutoff: usize,
    /// …and these, its peers outside that range.
    pub beyond: Vec<i64>,
}

/// The `updateUsers` list of PROTOCOL.md when the head is not the whole directory: the
/// user's conversation peers (in directory order) first, then the others in directory
/// order, `limit` in all. Costs O(limit), whatever the size of the directory or the
/// number of sockets.
pub fn listing(head: &Arc<Head>, mut peers: Vec<User>, limit: usize) -> Listing {
    if head.is_complete() {
        return Listing {
            names: head.names.clone(),
            cutoff: head.ids.len(),
            beyond: Vec::new(),
        };
    }
    peers.truncate(limit);
    let room = limit - peers.len();
    let peer_ids: HashSet<i64> = peers.iter().map(|p| p.id).collect();
    let mut names: Vec<Arc<str>> = Vec::with_capacity(limit);
    for peer in &peers {
        // The head's copy when there is one: no second allocation of the name.
        match head.rank(peer.id) {
            Some(rank) => names.push(head.names[rank].clone()),
            None => names.push(Arc::from(peer.username.as_str())),
        }
    }
    let mut cutoff = 0;
    let mut taken = 0;
    for (rank, id) in head.ids.iter().enumerate() {
        if taken == room {
            break;
        }
        cutoff = rank + 1;
        if !peer_ids.contains(id) {
            names.push(head.names[rank].clone());
            taken += 1;
        }
    }
    let beyond = peers
        .iter()
        .filter(|p| head.rank(p.id).is_none_or(|rank| rank >= cutoff))
        .map(|p| p.id)
        .collect();
    Listing {
        names,
        cutoff,
        beyond,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(names: &[&str]) -> Vec<User> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| User {
                id: i as i64 + 1,
                username: (*n).to_owned(),
            })
            .collect()
    }

    fn names(listing: &Listing) -> Vec<&str> {
        listing.names.iter().map(|n| &**n).collect()
    }

    #[test]
    fn a_small_directory_is_listed_whole() {
        let head = Arc::new(Head::new(users(&["ann", "ben", "cat"]), 3));
        assert!(head.is_complete());
        let listing = listing(&head, users(&["cat"]), 3);
        assert_eq!(names(&listing), ["ann", "ben", "cat"]);
        assert_eq!((listing.cutoff, listing.beyond), (3, vec![]));
    }

    #[test]
    fn past_the_limit_peers_come_first_then_the_others_in_order() {
        // ids 1..=5: ann ben cat dan eve; the head holds the first 4 of 5 (limit 4).
        let all = users(&["ann", "ben", "cat", "dan", "eve"]);
        let head = Arc::new(Head::new(all.clone(), 4));
        assert!(!head.is_complete());
        assert_eq!(head.ids(0..9), [1, 2, 3, 4]);
        let eve = all[4].clone();
        let ben = all[1].clone();
        let listing = listing(&head, vec![ben, eve], 4);
        assert_eq!(names(&listing), ["ben", "eve", "ann", "cat"]);
        // ann and cat come from the head (ranks 0 and 2, ben skipped): the first 3.
        assert_eq!(listing.cutoff, 3);
        assert_eq!(
            listing.beyond,
            [5],
            "eve is outside the head's range; ben within"
        );
        let alone = super::listing(&head, Vec::new(), 4);
        assert_eq!(names(&alone), ["ann", "ben", "cat", "dan"]);
        assert_eq!((alone.cutoff, alone.beyond), (4, vec![]));
    }

    #[test]
    fn a_user_with_more_peers_than_the_limit_lists_only_peers() {
        let all = users(&["ann", "ben", "cat", "dan", "eve"]);
        let head = Arc::new(Head::new(all.clone(), 2));
        let listing = listing(&head, all[2..].to_vec(), 2);
        assert_eq!(names(&listing), ["cat", "dan"]);
        assert_eq!((listing.cutoff, listing.beyond), (0, vec![3, 4]));
    }

    #[test]
    fn heads_compare_by_who_they_list() {
        let a = Head::new(users(&["ann", "ben"]), 5);
        assert!(a.same_as(&Head::new(users(&["ann", "ben"]), 5)));
        assert!(!a.same_as(&Head::new(users(&["ann", "ben"]), 1)));
        assert_eq!(a.ids(0..9), [1, 2]);
        assert_eq!(a.ids(2..9), [] as [i64; 0]);
    }
}
