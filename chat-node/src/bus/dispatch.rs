//! One pub/sub message to the local sockets it concerns. A socket whose outbox is full is
//! not waited for: its outbox asks it to close, and every other delivery goes on.

use bytestring::ByteString;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::channel::Channel;
use super::envelope::{now_us, UserEvent};
use super::hub::{ConnId, Hub};
use super::outbox::Closing;

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
        let reg = self.registry();
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
        reg.broadcast(&ids, &text);
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
        let reg = self.registry();
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
        reg.broadcast(&ids, &text);
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
                    if let Some(conn) = reg.conns.get(&id) {
                        if conn.session_tag == session_tag {
                            conn.outbox.request_close(Closing::new(1008, "logged out"));
                        }
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
                let delivered = reg.broadcast(&ids, &text) as u64;
                let mut changed = false;
                if let Some(peer) = &peer {
                    for id in &ids {
                        changed |= reg.add_watch(*id, peer);
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
            UserEvent { .. } => tracing::warn!("empty event on a user channel"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::hub::tests::{dirty, hub, open_outbox, socket, text};
    use super::super::outbox::{Frame, TOO_SLOW};
    use super::*;

    #[test]
    fn presence_reaches_the_sockets_that_watch_the_user_only() {
        let hub = hub();
        let (a, ra) = socket(&hub, 1, "ann");
        let (_b, rb) = socket(&hub, 2, "ben");
        hub.watch(a, ["cat", "ann"]);
        hub.dispatch(
            "t:p:ann",
            br#"{"type":"presence","username":"ann","online":true}"#,
        );
        assert_eq!(text(&ra), None, "not one's own presence");
        let dirty = dirty(&hub);
        assert!(dirty.contains(&("t:p:cat".to_owned(), true)), "{dirty:?}");
        hub.dispatch(
            "t:p:cat",
            br#"{"type":"presence","username":"cat","online":true}"#,
        );
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
        let event =
            serde_json::to_vec(&UserEvent::frame(&frame, Some("dan".into()), None)).unwrap();
        hub.dispatch("t:u:1", &event);
        let got = text(&r1).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&got).unwrap(),
            frame
        );
        assert_eq!(text(&r2), Some(got));
        assert_eq!(dirty(&hub), vec![("t:p:dan".to_owned(), true)]);
        hub.unregister(a1);
        hub.dispatch("t:u:1", &event);
        assert!(text(&r2).is_some(), "the other socket still gets it");
    }

    #[test]
    fn sockets_listing_everyone_get_every_presence_change_but_their_own() {
        let hub = hub();
        let (a, ra) = socket(&hub, 1, "ann");
        let (b, rb) = socket(&hub, 2, "ben");
        hub.watch(b, ["cat"]);
        hub.follow_everyone(a);
        hub.dispatch(
            "t:p:dan",
            br#"{"type":"presence","username":"dan","online":true}"#,
        );
        assert!(text(&ra).is_some_and(|t| t.contains("dan")));
        assert_eq!(text(&rb), None, "ben does not follow dan");
        hub.dispatch(
            "t:p:cat",
            br#"{"type":"presence","username":"cat","online":true}"#,
        );
        assert!(text(&ra).is_some());
        assert!(text(&rb).is_some(), "ben follows cat");
        hub.dispatch(
            "t:p:ann",
            br#"{"type":"presence","username":"ann","online":true}"#,
        );
        assert_eq!(text(&ra), None, "not one's own presence");
        hub.dispatch("t:p:x:u:1", b"{}");
        assert_eq!(text(&ra), None, "not a presence channel of ours");
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

    #[tokio::test]
    async fn logout_closes_only_the_sockets_of_that_session() {
        let hub = hub();
        let phone = open_outbox(1024);
        let laptop = open_outbox(1024);
        hub.register(1, "ann", "phone", phone.clone(), 10).unwrap();
        hub.register(1, "ann", "laptop", laptop.clone(), 10)
            .unwrap();
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
        hub.register(1, "ann", "tag", slow.clone(), 10).unwrap();
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
