//! One pub/sub message to the local sockets it concerns. Sockets whose outbox is full are
//! evicted here rather than slowing every other delivery down.

use bytestring::ByteString;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::channel::Channel;
use super::envelope::{now_us, UserEvent};
use super::hub::{ConnId, Hub, Outbound};

impl Hub {
    pub fn dispatch(&self, channel: &str, payload: &[u8]) {
        match self.channels().parse(channel) {
            Some(Channel::User(user_id)) => self.dispatch_user(user_id, payload),
            Some(Channel::Presence(name)) => self.dispatch_presence(&name, payload),
            Some(Channel::Directory) => self.dispatch_new_user(payload),
            Some(Channel::AllPresence) | None => {
                tracing::warn!(channel, "message on an unknown channel")
            }
        }
    }

    fn dispatch_presence(&self, name: &str, payload: &[u8]) {
        let Ok(text) = std::str::from_utf8(payload) else {
            return;
        };
        let text = ByteString::from(text.to_owned());
        let mut reg = self.registry();
        // Everyone's presence, but not one's own: the directory leaves oneself out.
        let mut ids: Vec<ConnId> = reg
            .everyone
            .iter()
            .copied()
            .filter(|id| reg.conns.get(id).is_some_and(|c| c.username != name))
            .collect();
        if let Some(watchers) = reg.watchers.get(name) {
            ids.extend(watchers.iter().filter(|id| !reg.everyone.contains(id)));
        }
        let stuck = reg.broadcast(&ids, &text);
        reg.evict(stuck);
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
        let mut reg = self.registry();
        let ids: Vec<ConnId> = reg
            .everyone
            .iter()
            .copied()
            .filter(|id| {
                reg.conns
                    .get(id)
                    .is_some_and(|c| !c.username.eq_ignore_ascii_case(&user.username))
            })
            .collect();
        let stuck = reg.broadcast(&ids, &text);
        reg.evict(stuck);
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
                    let same = reg
                        .conns
                        .get(&id)
                        .is_some_and(|c| c.session_tag == session_tag);
                    if same {
                        reg.send(id, Outbound::Close(1008, "logged out"));
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
                let stuck = reg.broadcast(&ids, &text);
                let mut changed = false;
                if let Some(peer) = &peer {
                    for id in &ids {
                        changed |= reg.add_watch(*id, peer);
                    }
                }
                let delivered = (ids.len() - stuck.len()) as u64;
                reg.evict(stuck);
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
            UserEvent { .. } => tracing::warn!("empty event on a user channel"),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::super::hub::tests::{dirty, hub, socket, text};
    use super::*;

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
    fn sockets_listing_everyone_get_every_presence_change_but_their_own() {
        let hub = hub();
        let (a, mut ra) = socket(&hub, 1, "ann");
        let (b, mut rb) = socket(&hub, 2, "ben");
        hub.watch(b, ["cat"]);
        hub.follow_everyone(a);
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
    fn a_socket_whose_outbox_is_full_is_evicted() {
        let hub = hub();
        let (tx, mut rx) = mpsc::channel(1);
        hub.register(1, "ann", "tag", tx);
        let frame = serde_json::json!({"type": "typing", "from": "dan"});
        let event = serde_json::to_vec(&UserEvent::frame(&frame, None, None)).unwrap();
        hub.dispatch("t:u:1", &event);
        hub.dispatch("t:u:1", &event);
        assert!(text(&mut rx).is_some());
        assert!(
            matches!(rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)),
            "the outbox is closed, so the socket task closes the socket"
        );
    }
}
