//! What travels on a user or room channel, and the one way a frame becomes text.

use std::time::{SystemTime, UNIX_EPOCH};

use bytestring::ByteString;
use chat_common::protocol::RoomInfo;
use serde::{Deserialize, Serialize};

/// A room's membership after a change, as every node needs it: the `room` frame, who is
/// in (by id, to update the node's view) and who was removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomChange {
    pub room: RoomInfo,
    pub member_ids: Vec<i64>,
    #[serde(default)]
    pub removed: Vec<i64>,
    /// Who made the change: their sockets get the request's `clientId` as `ref`.
    pub by: i64,
    #[serde(default)]
    pub reference: Option<String>,
}

/// The envelope on a room channel: a frame for the local members (a message, typing), or
/// a membership change.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomEvent<F> {
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub frame: Option<F>,
    /// The member who sent the frame: members start following their presence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<i64>,
    /// Typing goes to the other members only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_to_sender: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_at_us: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<RoomChange>,
}

/// The envelope on a user channel: a server frame for every socket of the user, or a
/// logout. A plain struct rather than a tagged enum, so the frame can stay a `RawValue`
/// and be forwarded without parsing it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserEvent<F> {
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub frame: Option<F>,
    /// The other party of a message (a user id), so sockets start following their
    /// presence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<i64>,
    /// When the message was stored, to time the fan-out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_at_us: Option<i64>,
    /// The session with this tag logged out: its sockets close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logout: Option<String>,
    /// The user was added to a room (or it was created with them): the node follows the
    /// room's channel and sends the `room` frame, unless the room channel told it first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joined: Option<RoomChange>,
}

fn none<F>() -> Option<F> {
    None
}

impl<F> UserEvent<F> {
    pub fn frame(frame: F, peer_id: Option<i64>, stored_at_us: Option<i64>) -> Self {
        Self {
            frame: Some(frame),
            peer_id,
            stored_at_us,
            logout: None,
            joined: None,
        }
    }

    pub fn joined(change: RoomChange) -> Self {
        Self {
            frame: None,
            peer_id: None,
            stored_at_us: None,
            logout: None,
            joined: Some(change),
        }
    }

    pub fn logout(session_tag: String) -> Self {
        Self {
            frame: None,
            peer_id: None,
            stored_at_us: None,
            logout: Some(session_tag),
            joined: None,
        }
    }
}

pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Bytes of a frame, serialised once for every socket it goes to.
pub fn frame_text(frame: &impl Serialize) -> Result<ByteString, serde_json::Error> {
    serde_json::to_string(frame).map(ByteString::from)
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;

    #[test]
    fn user_events_carry_the_frame_verbatim() {
        let frame = serde_json::json!({"type": "typing", "from": "bob"});
        let sent = UserEvent::frame(&frame, Some(2), Some(7));
        let wire = serde_json::to_string(&sent).unwrap();
        let got: UserEvent<&RawValue> = serde_json::from_str(&wire).unwrap();
        let raw = got.frame.unwrap().get();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(raw).unwrap(),
            frame
        );
        assert_eq!(got.peer_id, Some(2));
        assert_eq!(got.stored_at_us, Some(7));
        let wire = serde_json::to_string(&UserEvent::<()>::logout("t1".into())).unwrap();
        let got: UserEvent<&RawValue> = serde_json::from_str(&wire).unwrap();
        assert_eq!(got.logout.as_deref(), Some("t1"));
        assert!(got.frame.is_none());
    }
}
