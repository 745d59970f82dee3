//! One pub/sub message to the local sockets it concerns. A socket whose outbox is full is
//! not waited for: its outbox asks it to close, and every other delivery goes on.

use bytestring::ByteString;
use chat_common::protocol::ServerFrame;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::channel::Channel;
use super::envelope::{frame_text, now_us, RoomChange, RoomEvent, UserEvent};
use super::hub::{ConnId, Hub};
use super::outbox::Closing;

impl Hub {
    pub fn dispatch(&self, channel: &str, payload: &[u8]) {
        match self.channels().parse(channel) {
            Some(Channel::User(user_id)) => self.dispatch_user(user_id, payload),
            Some(Channel::Room(room_id)) => self.dispatch_room(room_id, payload),
            Some(Channel::Presence(user_id)) => self.dispatch_presence(user_id, payload),
            Some(Channel::Directory) => self.dispatch_new_user(payload),
            Some(Channel::AllPresence) | None => {
                tracing::warn!(channel, "message on an unknown channel")
            }
        }
    }

    /// A `presence` frame, forwarded as it came to the sockets the index names. Their
    /// writers are woken with the next batch, not at once.
    fn dispatch_presence(&self, user_id: i64, payload: &[u8]) {
        let Ok(text) = std::str::from_utf8(payload) else {
            return;
        };
        let text = ByteString::from(text.to_owned());
        let reg = self.registry();
        let ids = reg.presence_recipients(user_id);
        let nudge = reg.broadcast_later(&ids, &text, Some(user_id));
        drop(reg);
        self.nudge_later(nudge);
    }

    /// A user registered: sockets that list everyone learn of them (they already follow
    /// every presence change), and the next socket to connect reloads the head.
    fn dispatch_new_user(&self, payload: &[u8]) {
        #[derive(Deserialize)]
        struct NewUser {
            username: String,
        }
        self.directory_changed();
        let Ok(user) = serde_json::from_slice::<NewUser>(payload) else {
            tracing::warn!("undecodable event on the directory channel");
            return;
        };
        let Ok(text) = std::str::from_utf8(payload) else {
            return;
        };
        let text = ByteString::from(text.to_owned());
        let reg = self.registry();
        let ids: Vec<ConnId> = reg
            .everyone
            .iter()
            .copied()
            .filter(|id| {
                reg.conns
                    .get(id)
                    .and_then(|c| reg.users.get(&c.user_id))
                    .is_some_and(|u| !u.name.eq_ignore_ascii_case(&user.username))
            })
            .collect();
        let nudge = reg.broadcast_later(&ids, &text, None);
        drop(reg);
        self.nudge_later(nudge);
    }

    fn dispatch_user(&self, user_id: i64, payload: &[u8]) {
        let event: UserEvent<&RawValue> = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable event on a user channel");
                return;
            }
        };
        let mut reg = self.registry();
        let ids: Vec<ConnId> = reg
            .users
            .get(&user_id)
            .map(|u| u.conns.clone())
            .unwrap_or_default();
        match event {
            UserEvent {
                logout: Some(session_tag),
                ..
            } => {
                for id in ids {
                    if let Some(conn) = reg.conns.get(&id) {
                        if *conn.session_tag == *session_tag {
                            conn.outbox.request_close(Closing::new(1008, "logged out"));
                        }
                    }
                }
            }
            UserEvent {
                frame: Some(frame),
                peer_id,
                stored_at_us,
                ..
            } => {
                let text = ByteString::from(frame.get().to_owned());
                let delivered = reg.broadcast(&ids, &text, None) as u64;
                let mut changed = false;
                if let Some(peer_id) = peer_id {
                    for id in &ids {
                        changed |= reg.add_watch(*id, peer_id);
                    }
                }
                drop(reg);
                if changed {
                    self.notify_changed();
                }
                if let Some(stored) = stored_at_us {
                    let metrics = self.metrics();
                    metrics.messages_delivered.inc_by(delivered);
                    let latency = (now_us() - stored).max(0) as f64 / 1e6;
                    metrics.fanout_latency.observe(latency);
                }
            }
            UserEvent {
                joined: Some(change),
                ..
            } => {
                drop(reg);
                self.joined(user_id, change);
            }
            UserEvent { .. } => tracing::warn!("empty event on a user channel"),
        }
    }

    /// A user of this node was added to a room (or it was created with them). When the
    /// room's channel already told this node, the `room` frame went out then; otherwise
    /// it waits for the room's channel to be subscribed.
    fn joined(&self, user_id: i64, change: RoomChange) {
        let Ok(room_id) = i64::try_from(change.room.id) else {
            return;
        };
        let mut reg = self.registry();
        if !reg.join_room(room_id, user_id) {
            return;
        }
        let frames = RoomFrames::new(&change);
        let ids = reg.conns_of(user_id).to_vec();
        if let Some(text) = frames.room_for(user_id) {
            let held = ids.iter().map(|id| (*id, text.clone()));
            reg.after_subscribe.extend(held);
        }
        for id in &ids {
            for member in &change.member_ids {
                reg.add_watch(*id, *member);
            }
        }
        drop(reg);
        self.notify_changed();
    }

    fn dispatch_room(&self, room_id: i64, payload: &[u8]) {
        let event: RoomEvent<&RawValue> = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable event on a room channel");
                return;
            }
        };
        if let Some(change) = event.change {
            self.room_changed(room_id, change);
            return;
        }
        let Some(frame) = event.frame else {
            tracing::warn!("empty event on a room channel");
            return;
        };
        let text = ByteString::from(frame.get().to_owned());
        let mut reg = self.registry();
        let except = event.from.filter(|_| event.not_to_sender);
        let ids: Vec<ConnId> = reg
            .rooms
            .get(&room_id)
            .into_iter()
            .flatten()
            .filter(|user_id| Some(**user_id) != except)
            .flat_map(|user_id| reg.conns_of(*user_id).iter().copied())
            .collect();
        let delivered = reg.broadcast(&ids, &text, None) as u64;
        let mut changed = false;
        if let Some(from) = event.from {
            for id in &ids {
                changed |= reg.add_watch(*id, from);
            }
        }
        drop(reg);
        if changed {
            self.notify_changed();
        }
        if let Some(stored) = event.stored_at_us {
            let metrics = self.metrics();
            metrics.messages_delivered.inc_by(delivered);
            let latency = (now_us() - stored).max(0) as f64 / 1e6;
            metrics.fanout_latency.observe(latency);
        }
    }

    /// Members were added or removed. The removed leave the node's view before their
    /// `roomLeft` is queued, so nothing of the room published after the change reaches
    /// them; every local member gets the `room` frame, the added ones once the room's
    /// channel is subscribed.
    fn room_changed(&self, room_id: i64, change: RoomChange) {
        let frames = RoomFrames::new(&change);
        let mut reg = self.registry();
        let mut left: Vec<ConnId> = Vec::new();
        for user_id in &change.removed {
            if reg.leave_room(room_id, *user_id) {
                left.extend(reg.conns_of(*user_id));
            }
        }
        let mut joined: Vec<i64> = Vec::new();
        for user_id in &change.member_ids {
            if reg.join_room(room_id, *user_id) {
                joined.push(*user_id);
            }
        }
        let members: Vec<i64> = reg.rooms.get(&room_id).cloned().unwrap_or_default();
        for user_id in members {
            if let Some(text) = frames.room_for(user_id) {
                let ids = reg.conns_of(user_id).to_vec();
                if joined.contains(&user_id) {
                    let held = ids.into_iter().map(|id| (id, text.clone()));
                    reg.after_subscribe.extend(held);
                } else {
                    reg.broadcast(&ids, text, None);
                }
            }
        }
        if let Some(text) = &frames.left {
            reg.broadcast(&left, text, None);
        }
        for user_id in joined {
            let ids = reg.conns_of(user_id).to_vec();
            for id in ids {
                for member in &change.member_ids {
                    reg.add_watch(id, *member);
                }
            }
        }
        drop(reg);
        self.notify_changed();
    }
}

/// The frames of one membership change, each serialised once: the `room` frame with the
/// request's `ref` (for the sockets of who made it) and without, and `roomLeft`.
struct RoomFrames {
    by: i64,
    with_ref: Option<ByteString>,
    without_ref: Option<ByteString>,
    left: Option<ByteString>,
}

impl RoomFrames {
    fn new(change: &RoomChange) -> Self {
        let room = |reference: Option<String>| {
            frame_text(&ServerFrame::Room {
                room: change.room.clone(),
                reference,
            })
            .map_err(|e| tracing::error!(error = %e, "encoding a room frame"))
            .ok()
        };
        Self {
            by: change.by,
            with_ref: change.reference.clone().and_then(|r| room(Some(r))),
            without_ref: room(None),
            left: frame_text(&ServerFrame::RoomLeft {
                room: change.room.id,
            })
            .ok(),
        }
    }

    fn room_for(&self, user_id: i64) -> Option<&ByteString> {
        if user_id == self.by {
            self.with_ref.as_ref().or(self.without_ref.as_ref())
        } else {
            self.without_ref.as_ref()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::directory::{listing, Head};
    use super::super::hub::tests::{dirty, hub, open_outbox, socket, text, user, PRESENCE_BATCH};
    use super::super::hub::PRESENCE_DELAY;
    use super::super::outbox::{Frame, TOO_SLOW};
    use super::*;

    fn presence(hub: &Hub, user_id: i64, name: &str) {
        let frame = format!(r#"{{"type":"presence","username":"{name}","online":true}}"#);
        hub.dispatch(&format!("t:p:{user_id}"), frame.as_bytes());
    }

    fn added(hub: &Hub, user_id: i64, via_room_channel: bool) {
        let change = serde_json::json!({
            "room": {"id": 7, "name": "r", "owner": "ann", "members": ["ann", "ben"]},
            "memberIds": [1, 2],
            "by": 1,
        });
        let (channel, event) = if via_room_channel {
            ("t:r:7".to_owned(), serde_json::json!({"change": change}))
        } else {
            (
                format!("t:u:{user_id}"),
                serde_json::json!({"joined": change}),
            )
        };
        hub.dispatch(&channel, event.to_string().as_bytes());
    }

    #[test]
    fn an_added_members_room_frame_waits_until_the_rooms_channel_is_subscribed() {
        for via_room_channel in [false, true] {
            let hub = hub();
            let (_b, rb) = socket(&hub, 2, "ben");
            dirty(&hub);
            added(&hub, 2, via_room_channel);
            let wanted = dirty(&hub);
            assert!(wanted.contains(&("t:r:7".to_owned(), true)), "{wanted:?}");
            assert_eq!(text(&rb), None, "not before the SUBSCRIBE is confirmed");
            hub.release_after_subscribe();
            assert!(
                text(&rb).is_some_and(|t| t.contains(r#""type":"room""#)),
                "via the room channel: {via_room_channel}"
            );
        }
    }

    #[test]
    fn presence_frames_wait_for_the_batch_and_one_nudge_wakes_each_writer() {
        let hub = hub();
        let (a, ra) = socket(&hub, 1, "ann");
        hub.watch(a, [2, 3]);
        assert_eq!(hub.nudge_due(), None);
        presence(&hub, 2, "ben");
        presence(&hub, 3, "cat");
        let due = hub.nudge_due().expect("a batch is due");
        assert!(due <= tokio::time::Instant::now() + PRESENCE_DELAY);
        hub.nudge_all();
        assert_eq!(hub.nudge_due(), None);
        assert!(text(&ra).is_some_and(|t| t.contains("ben")));
        assert!(text(&ra).is_some_and(|t| t.contains("cat")));
    }

    /// A lone change waits only the short delay; once a batch went out, the changes
    /// that follow wait for the rest of the batch period, however many they are.
    #[tokio::test(start_paused = true)]
    async fn a_lone_presence_change_goes_out_soon_and_a_storm_once_per_batch() {
        use tokio::time::{advance, Instant};
        let hub = hub();
        let (a, ra) = socket(&hub, 1, "ann");
        hub.watch(a, [2, 3, 4]);
        presence(&hub, 2, "ben");
        assert_eq!(hub.nudge_due(), Some(Instant::now() + PRESENCE_DELAY));
        advance(PRESENCE_DELAY).await;
        hub.nudge_all();
        let first_batch = Instant::now();
        assert!(text(&ra).is_some_and(|t| t.contains("ben")));

        advance(PRESENCE_DELAY).await;
        presence(&hub, 3, "cat");
        presence(&hub, 4, "dan");
        assert_eq!(hub.nudge_due(), Some(first_batch + PRESENCE_BATCH));
        advance(PRESENCE_BATCH).await;
        hub.nudge_all();
        assert!(text(&ra).is_some_and(|t| t.contains("cat")));
        assert!(text(&ra).is_some_and(|t| t.contains("dan")));

        // Quiet for longer than a batch: the next lone change goes out soon again.
        advance(PRESENCE_BATCH * 2).await;
        presence(&hub, 2, "ben");
        assert_eq!(hub.nudge_due(), Some(Instant::now() + PRESENCE_DELAY));
    }

    #[test]
    fn presence_reaches_the_sockets_that_watch_the_user_only() {
        let hub = hub();
        let (a, ra) = socket(&hub, 1, "ann");
        let (_b, rb) = socket(&hub, 2, "ben");
        hub.watch(a, [3, 1]);
        presence(&hub, 1, "ann");
        assert_eq!(text(&ra), None, "not one's own presence");
        let dirty = dirty(&hub);
        assert!(dirty.contains(&("t:p:3".to_owned(), true)), "{dirty:?}");
        assert!(!dirty.iter().any(|(c, _)| c == "t:p:1"), "{dirty:?}");
        presence(&hub, 3, "cat");
        assert!(text(&ra).is_some_and(|t| t.contains("cat")));
        assert_eq!(text(&rb), None);
    }

    #[test]
    fn a_message_goes_to_every_socket_of_the_user_and_follows_the_peer() {
        let hub = hub();
        let (a1, r1) = socket(&hub, 1, "ann");
        let (_a2, r2) = socket(&hub, 1, "ann");
        dirty(&hub);
        let frame = serde_json::json!({"type": "typing", "from": "dan"});
        let event = serde_json::to_vec(&UserEvent::frame(&frame, Some(4), None)).unwrap();
        hub.dispatch("t:u:1", &event);
        let got = text(&r1).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&got).unwrap(),
            frame
        );
        assert_eq!(text(&r2), Some(got));
        assert_eq!(dirty(&hub), vec![("t:p:4".to_owned(), true)]);
        hub.unregister(a1);
        hub.dispatch("t:u:1", &event);
        assert!(text(&r2).is_some(), "the other socket still gets it");
        assert!(dirty(&hub).is_empty(), "the other socket still follows dan");
    }

    #[test]
    fn sockets_listing_everyone_get_every_presence_change_but_their_own() {
        let hub = hub();
        let (a, ra) = socket(&hub, 1, "ann");
        let (b, rb) = socket(&hub, 2, "ben");
        hub.watch(b, [3]);
        hub.follow_everyone(a);
        presence(&hub, 4, "dan");
        assert!(text(&ra).is_some_and(|t| t.contains("dan")));
        assert_eq!(text(&rb), None, "ben does not follow dan");
        presence(&hub, 3, "cat");
        assert!(text(&ra).is_some());
        assert!(text(&rb).is_some(), "ben follows cat");
        presence(&hub, 1, "ann");
        assert_eq!(text(&ra), None, "not one's own presence");
        hub.dispatch("t:p:x:u:1", b"{}");
        assert_eq!(text(&ra), None, "not a presence channel of ours");
    }

    /// The per-node index: 1000 sockets that listed from one head cost one entry each,
    /// and a presence change reaches exactly those whose listing took the user in.
    #[test]
    fn presence_follows_each_sockets_listing_of_the_shared_head() {
        let hub = hub();
        // ids 1..=6; the head holds the first 4 (u1..u4) of a 6-user directory.
        let directory: Vec<_> = (1..=6).map(|id| user(id, &format!("u{id}"))).collect();
        let head = Arc::new(Head::new(directory.clone(), 4));
        let follow = |user_id: i64, peers: &[usize]| {
            let (id, outbox) = socket(&hub, user_id, &format!("u{user_id}"));
            let peers = peers.iter().map(|p| directory[*p].clone()).collect();
            let listing = listing(&head, peers, 4);
            hub.follow_head(id, &head, listing.cutoff, &listing.beyond);
            outbox
        };
        let plain: Vec<_> = (100..1100).map(|id| follow(id, &[])).collect();
        // u5 talks with u6 (beyond the head) and u2: it lists u2 u6 u1 u3.
        let chatty = follow(5, &[1, 5]);
        presence(&hub, 4, "u4");
        assert!(
            plain.iter().all(|o| text(o).is_some()),
            "u4 is in every plain list"
        );
        assert_eq!(text(&chatty), None, "chatty's list stops at u3");
        presence(&hub, 2, "u2");
        assert!(plain.iter().all(|o| text(o).is_some()));
        assert!(
            text(&chatty).is_some(),
            "a peer inside the head, delivered once"
        );
        assert_eq!(text(&chatty), None);
        presence(&hub, 6, "u6");
        assert!(text(&chatty).is_some(), "a peer beyond the head");
        assert!(
            plain.iter().all(|o| text(o).is_none()),
            "u6 is beyond their lists"
        );
        presence(&hub, 5, "u5");
        assert!(
            plain.iter().all(|o| text(o).is_none()),
            "u5 is beyond their lists"
        );
    }

    #[test]
    fn a_socket_listed_from_an_older_head_keeps_following_what_it_listed() {
        let hub = hub();
        let old = Arc::new(Head::new(
            vec![user(1, "b1"), user(2, "b2"), user(3, "b3")],
            2,
        ));
        // a3 registered and sorts first: the new head is a3 b1.
        let new = Arc::new(Head::new(
            vec![user(4, "a3"), user(1, "b1"), user(2, "b2")],
            2,
        ));
        let (a, ra) = socket(&hub, 9, "z");
        let (b, rb) = socket(&hub, 8, "y");
        hub.follow_head(a, &old, 2, &[]);
        hub.follow_head(b, &new, 2, &[]);
        presence(&hub, 2, "b2");
        assert!(text(&ra).is_some() && text(&rb).is_none());
        presence(&hub, 4, "a3");
        assert!(text(&ra).is_none() && text(&rb).is_some());
        presence(&hub, 1, "b1");
        assert!(text(&ra).is_some() && text(&rb).is_some());
    }

    #[test]
    fn new_users_are_announced_to_sockets_listing_everyone() {
        let hub = hub();
        let (a, ra) = socket(&hub, 1, "ann");
        let (_b, rb) = socket(&hub, 2, "ben");
        hub.follow_everyone(a);
        hub.dispatch(
            "t:directory",
            br#"{"type":"presence","username":"eve","online":false}"#,
        );
        assert!(text(&ra).is_some_and(|t| t.contains("eve")));
        assert_eq!(text(&rb), None);
    }

    fn room_event(change: Option<RoomChange>, frame: Option<serde_json::Value>) -> Vec<u8> {
        serde_json::to_vec(&RoomEvent {
            not_to_sender: frame.as_ref().is_some_and(|f| f["type"] == "typing"),
            frame,
            from: Some(1),
            stored_at_us: None,
            change,
        })
        .unwrap()
    }

    fn change(member_ids: Vec<i64>, removed: Vec<i64>) -> RoomChange {
        RoomChange {
            room: chat_common::protocol::RoomInfo {
                id: 7,
                name: "r".into(),
                owner: "ann".into(),
                members: vec!["ann".into()],
                unread: None,
            },
            member_ids,
            removed,
            by: 1,
            reference: Some("x".into()),
        }
    }

    #[test]
    fn a_removed_member_leaves_the_view_before_room_left_and_hears_nothing_after() {
        let hub = hub();
        let (_a, ra) = socket(&hub, 1, "ann");
        let (_b, rb) = socket(&hub, 2, "ben");
        hub.join_rooms(1, &[7]);
        hub.join_rooms(2, &[7]);
        let message = serde_json::json!({"type": "chatMessage", "message": {}});
        hub.dispatch("t:r:7", &room_event(None, Some(message.clone())));
        assert!(text(&ra).is_some() && text(&rb).is_some(), "both members");
        hub.dispatch("t:r:7", &room_event(Some(change(vec![1], vec![2])), None));
        let answer = text(&ra).unwrap();
        assert!(answer.contains(r#""ref":"x""#), "the actor's ref: {answer}");
        assert_eq!(
            text(&rb).as_deref(),
            Some(r#"{"type":"roomLeft","room":7}"#)
        );
        assert!(!hub.is_member(2, 7) && hub.is_member(1, 7));
        hub.dispatch("t:r:7", &room_event(None, Some(message)));
        assert!(text(&ra).is_some());
        assert_eq!(text(&rb), None, "nothing after roomLeft");
    }

    #[test]
    fn room_typing_reaches_the_other_members_only() {
        let hub = hub();
        let (_a, ra) = socket(&hub, 1, "ann");
        let (_b, rb) = socket(&hub, 2, "ben");
        hub.join_rooms(1, &[7]);
        hub.join_rooms(2, &[7]);
        let typing = serde_json::json!({"type": "typing", "from": "ann", "room": 7});
        hub.dispatch("t:r:7", &room_event(None, Some(typing)));
        assert_eq!(text(&ra), None);
        assert!(text(&rb).is_some_and(|t| t.contains("typing")));
    }

    #[test]
    fn a_member_added_gets_the_room_frame_once_and_the_node_follows_the_room() {
        let hub = hub();
        let (_a, ra) = socket(&hub, 1, "ann");
        let (_b, rb) = socket(&hub, 2, "ben");
        hub.join_rooms(1, &[7]);
        dirty(&hub);
        // The room's channel first (ann's node follows it), then ben's user channel.
        hub.dispatch("t:r:7", &room_event(Some(change(vec![1, 2], vec![])), None));
        let joined =
            serde_json::to_vec(&UserEvent::<()>::joined(change(vec![1, 2], vec![]))).unwrap();
        hub.dispatch("t:u:2", &joined);
        assert!(text(&ra).is_some());
        assert_eq!(
            text(&rb),
            None,
            "not before the room's channel is subscribed"
        );
        hub.release_after_subscribe();
        assert!(text(&rb).is_some_and(|t| !t.contains("ref")));
        assert_eq!(text(&rb), None, "once");
        assert!(hub.is_member(2, 7));
        // A node that did not follow the room learns it from the user channel.
        let other = super::super::hub::tests::hub();
        let (_c, rc) = socket(&other, 3, "cat");
        dirty(&other);
        other.dispatch("t:u:3", &joined_for(3));
        other.release_after_subscribe();
        assert!(text(&rc).is_some_and(|t| t.contains(r#""type":"room""#)));
        let wanted = dirty(&other);
        assert!(wanted.contains(&("t:r:7".to_owned(), true)), "{wanted:?}");
        assert!(
            wanted.contains(&("t:p:1".to_owned(), true)),
            "members count as peers for presence: {wanted:?}"
        );
    }

    fn joined_for(user_id: i64) -> Vec<u8> {
        serde_json::to_vec(&UserEvent::<()>::joined(change(vec![1, user_id], vec![]))).unwrap()
    }

    #[tokio::test]
    async fn logout_closes_only_the_sockets_of_that_session() {
        let hub = hub();
        let phone = open_outbox(1024);
        let laptop = open_outbox(1024);
        let ann = user(1, "ann");
        hub.register(&ann, "phone", phone.clone(), 10).unwrap();
        hub.register(&ann, "laptop", laptop.clone(), 10).unwrap();
        let event = serde_json::to_vec(&UserEvent::<()>::logout("phone".into())).unwrap();
        hub.dispatch("t:u:1", &event);
        assert_eq!(phone.closing().await.code, 1008);
        let unasked =
            tokio::time::timeout(std::time::Duration::from_millis(50), laptop.closing()).await;
        assert!(unasked.is_err(), "the laptop's session is still logged in");
    }

    #[tokio::test]
    async fn a_socket_whose_outbox_is_full_is_asked_to_close_and_others_still_receive() {
        let hub = hub();
        let frame = serde_json::json!({"type": "typing", "from": "dan"});
        let event = serde_json::to_vec(&UserEvent::frame(&frame, None, None)).unwrap();
        let one_frame = serde_json::to_string(&frame).unwrap().len();
        let slow = open_outbox(one_frame);
        hub.register(&user(1, "ann"), "tag", slow.clone(), 10)
            .unwrap();
        let (_, other) = socket(&hub, 1, "ann");
        hub.dispatch("t:u:1", &event);
        hub.dispatch("t:u:1", &event);
        assert_eq!(slow.closing().await, TOO_SLOW);
        assert!(text(&slow).is_some(), "the first frame fitted");
        assert!(text(&slow).is_none(), "the second did not");
        assert!(text(&other).is_some() && text(&other).is_some());
        assert!(
            !slow.push(Frame::Ping),
            "a socket that is too slow takes nothing more"
        );
    }
}
