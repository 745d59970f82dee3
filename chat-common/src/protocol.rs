//! The frames and bodies of PROTOCOL.md. Both directions derive `Serialize` and
//! `Deserialize` so the node, its tests and the load tests share one definition.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ErrorCode};
use crate::ids::MessageId;
use crate::validate;

pub const HISTORY_DEFAULT_LIMIT: u32 = 10;
pub const HISTORY_MAX_LIMIT: u32 = 50;
pub const SYNC_DEFAULT_LIMIT: u32 = 100;
pub const SYNC_MAX_LIMIT: u32 = 500;
/// The most users `updateUsers` lists; `GET /api/users` pages the rest.
pub const DIRECTORY_LIMIT: usize = 1000;
/// The most members a room may have (PROTOCOL.md); a node may be configured lower.
pub const ROOM_MAX_MEMBERS: usize = 1000;

/// `{"username", "password"}` for register and login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// `{"id", "username"}`: the answer to register, login and `/api/me`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: u64,
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserStatus {
    pub username: String,
    pub online: bool,
    /// Messages from this user the listening user has not marked read (docs/protocol.md);
    /// absent in `GET /api/users`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<u64>,
}

/// One page of `GET /api/users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UsersPage {
    pub users: Vec<UserStatus>,
    pub next: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    pub id: MessageId,
    pub channel: u64,
    /// The room's id for a room message; null in a one-to-one conversation.
    pub room: Option<u64>,
    pub from: String,
    /// The recipient of a one-to-one message; null in a room.
    pub to: Option<String>,
    pub text: String,
    pub sent_at: DateTime<Utc>,
    pub client_id: Option<String>,
}

/// A room as clients see it: `{"id", "name", "owner", "members"}`, plus the listening
/// user's unread count in the `rooms` frame (docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub id: u64,
    pub name: String,
    pub owner: String,
    pub members: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<u64>,
}

/// Which conversation a frame is about: `peer` or `room`, exactly one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conversation {
    Peer(String),
    Room(u64),
}

impl Conversation {
    /// The conversation named by a frame's `peer` and `room` fields.
    pub fn of(peer: Option<&str>, room: Option<u64>) -> Result<Self, ApiError> {
        match (peer, room) {
            (Some(peer), None) => Ok(Self::Peer(peer.to_owned())),
            (None, Some(room)) => Ok(Self::Room(room)),
            _ => Err(ApiError::new(
                ErrorCode::BadRequest,
                "name exactly one of peer and room",
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ClientFrame {
    ChatHistory {
        #[serde(default)]
        peer: Option<String>,
        #[serde(default)]
        room: Option<u64>,
        #[serde(default)]
        before: Option<MessageId>,
        #[serde(default)]
        limit: Option<u32>,
    },
    ChatMessage {
        #[serde(default)]
        peer: Option<String>,
        #[serde(default)]
        room: Option<u64>,
        text: String,
        #[serde(default)]
        client_id: Option<String>,
    },
    Typing {
        #[serde(default)]
        peer: Option<String>,
        #[serde(default)]
        room: Option<u64>,
    },
    DoneTyping {
        #[serde(default)]
        peer: Option<String>,
        #[serde(default)]
        room: Option<u64>,
    },
    Sync {
        after: MessageId,
        #[serde(default)]
        limit: Option<u32>,
    },
    CreateRoom {
        name: String,
        members: Vec<String>,
        #[serde(default)]
        client_id: Option<String>,
    },
    AddMembers {
        room: u64,
        members: Vec<String>,
        #[serde(default)]
        client_id: Option<String>,
    },
    RemoveMember {
        room: u64,
        username: String,
        #[serde(default)]
        client_id: Option<String>,
    },
    /// An extension (docs/protocol.md): the user has read the conversation up to `upTo`.
    MarkRead {
        #[serde(default)]
        peer: Option<String>,
        #[serde(default)]
        room: Option<u64>,
        up_to: MessageId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ServerFrame {
    UpdateUsers {
        users: Vec<UserStatus>,
    },
    Presence {
        username: String,
        online: bool,
    },
    ChatHistory {
        /// Null for a room's history.
        peer: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<u64>,
        channel: u64,
        messages: Vec<ChatMessage>,
        has_more: bool,
    },
    ChatMessage {
        message: ChatMessage,
    },
    Typing {
        from: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<u64>,
    },
    DoneTyping {
        from: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<u64>,
    },
    Sync {
        messages: Vec<ChatMessage>,
        has_more: bool,
    },
    Rooms {
        rooms: Vec<RoomInfo>,
    },
    Room {
        room: RoomInfo,
        #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    RoomLeft {
        room: u64,
    },
    /// An extension (docs/protocol.md): the user read a conversation up to `upTo` on one
    /// of their devices.
    Read {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<u64>,
        up_to: MessageId,
    },
    Error {
        code: ErrorCode,
        message: String,
        #[serde(rename = "ref")]
        reference: Option<String>,
    },
}

impl ServerFrame {
    pub fn error(err: ApiError, reference: Option<String>) -> Self {
        Self::Error {
            code: err.code,
            message: err.message,
            reference,
        }
    }
}

/// A client frame that could not be accepted, with the `clientId` to echo as `ref`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub error: ApiError,
    pub reference: Option<String>,
}

impl FrameError {
    fn bad_request(message: impl Into<String>, reference: Option<String>) -> Self {
        Self {
            error: ApiError::new(ErrorCode::BadRequest, message),
            reference,
        }
    }
}

impl ClientFrame {
    /// Parses and checks one text frame: structure, ranges and message content. Whether the
    /// peer exists is the node's question, not this one's.
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|_| FrameError::bad_request("a frame is one JSON object", None))?;
        let reference = value
            .get("clientId")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        if !value.is_object() {
            return Err(FrameError::bad_request("a frame is one JSON object", None));
        }
        let frame: Self = serde_json::from_value(value)
            .map_err(|e| FrameError::bad_request(e.to_string(), reference.clone()))?;
        frame
            .check()
            .map_err(|error| FrameError { error, reference })?;
        Ok(frame)
    }

    /// The request's `clientId`, echoed as `ref` on its answer or error.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Self::ChatMessage { client_id, .. }
            | Self::CreateRoom { client_id, .. }
            | Self::AddMembers { client_id, .. }
            | Self::RemoveMember { client_id, .. } => client_id.as_deref(),
            _ => None,
        }
    }

    fn check(&self) -> Result<(), ApiError> {
        let bad = |m: String| ApiError::new(ErrorCode::BadRequest, m);
        if let Some(id) = self.client_id() {
            validate::client_id(id)?;
        }
        match self {
            Self::ChatHistory {
                limit, peer, room, ..
            } => {
                Conversation::of(peer.as_deref(), *room)?;
                match limit {
                    Some(l) if !(1..=HISTORY_MAX_LIMIT).contains(l) => {
                        Err(bad(format!("limit is 1 to {HISTORY_MAX_LIMIT}")))
                    }
                    _ => Ok(()),
                }
            }
            Self::Sync { limit, .. } => match limit {
                Some(l) if !(1..=SYNC_MAX_LIMIT).contains(l) => {
                    Err(bad(format!("limit is 1 to {SYNC_MAX_LIMIT}")))
                }
                _ => Ok(()),
            },
            Self::ChatMessage {
                text, peer, room, ..
            } => {
                Conversation::of(peer.as_deref(), *room)?;
                validate::message_text(text)
            }
            Self::Typing { peer, room }
            | Self::DoneTyping { peer, room }
            | Self::MarkRead { peer, room, .. } => {
                Conversation::of(peer.as_deref(), *room).map(|_| ())
            }
            Self::CreateRoom { name, .. } => validate::room_name(name),
            Self::AddMembers { .. } | Self::RemoveMember { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> FrameError {
        ClientFrame::parse(text).expect_err("frame should be rejected")
    }

    #[test]
    fn client_frames_parse_from_protocol_json() {
        assert_eq!(
            ClientFrame::parse(
                r#"{"type":"chatMessage","peer":"bob","text":"hi","clientId":"c1"}"#
            ),
            Ok(ClientFrame::ChatMessage {
                peer: Some("bob".into()),
                room: None,
                text: "hi".into(),
                client_id: Some("c1".into()),
            })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"chatHistory","peer":"bob","before":7,"limit":5}"#),
            Ok(ClientFrame::ChatHistory {
                peer: Some("bob".into()),
                room: None,
                before: MessageId::new(7).ok(),
                limit: Some(5),
            })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"doneTyping","peer":"bob"}"#),
            Ok(ClientFrame::DoneTyping {
                peer: Some("bob".into()),
                room: None
            })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"typing","room":4}"#),
            Ok(ClientFrame::Typing {
                peer: None,
                room: Some(4)
            })
        );
        assert_eq!(
            ClientFrame::parse(
                r#"{"type":"createRoom","name":"team","members":["bob"],"clientId":"r1"}"#
            ),
            Ok(ClientFrame::CreateRoom {
                name: "team".into(),
                members: vec!["bob".into()],
                client_id: Some("r1".into()),
            })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"removeMember","room":3,"username":"bob"}"#),
            Ok(ClientFrame::RemoveMember {
                room: 3,
                username: "bob".into(),
                client_id: None,
            })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"markRead","room":3,"upTo":9}"#),
            Ok(ClientFrame::MarkRead {
                peer: None,
                room: Some(3),
                up_to: MessageId::new(9).expect("in range"),
            })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"sync","after":0}"#),
            Ok(ClientFrame::Sync {
                after: MessageId::new(0).expect("0 is in range"),
                limit: None,
            })
        );
    }

    #[test]
    fn unknown_fields_are_ignored_so_from_cannot_be_forged() {
        assert_eq!(
            ClientFrame::parse(r#"{"type":"chatMessage","peer":"bob","text":"hi","from":"eve"}"#),
            Ok(ClientFrame::ChatMessage {
                peer: Some("bob".into()),
                room: None,
                text: "hi".into(),
                client_id: None,
            })
        );
    }

    #[test]
    fn malformed_frames_are_bad_requests() {
        for text in [
            "not json",
            "[1,2]",
            "42",
            r#"{"type":"dance"}"#,
            r#"{"peer":"bob"}"#,
            r#"{"type":"chatMessage","peer":"bob"}"#,
            r#"{"type":"chatMessage","peer":7,"text":"hi"}"#,
            r#"{"type":"chatHistory","peer":"bob","limit":0}"#,
            r#"{"type":"chatHistory","peer":"bob","limit":51}"#,
            r#"{"type":"sync","after":-1}"#,
            r#"{"type":"sync","after":1,"limit":501}"#,
            r#"{"type":"typing"}"#,
            r#"{"type":"typing","peer":"bob","room":1}"#,
            r#"{"type":"chatMessage","room":"x","text":"hi"}"#,
            r#"{"type":"addMembers","room":1}"#,
            r#"{"type":"markRead","peer":"bob"}"#,
        ] {
            assert_eq!(parse_err(text).error.code, ErrorCode::BadRequest, "{text}");
        }
    }

    #[test]
    fn content_errors_carry_their_code_and_the_client_id_as_ref() {
        let e = parse_err(r#"{"type":"chatMessage","peer":"bob","text":"  ","clientId":"c9"}"#);
        assert_eq!(e.error.code, ErrorCode::EmptyMessage);
        assert_eq!(e.reference.as_deref(), Some("c9"));
        let long = format!(
            r#"{{"type":"chatMessage","peer":"bob","text":"{}"}}"#,
            "a".repeat(4001)
        );
        assert_eq!(parse_err(&long).error.code, ErrorCode::MessageTooLong);
        let e = parse_err(r#"{"type":"chatMessage","peer":"bob","clientId":"c3"}"#);
        assert_eq!(e.reference.as_deref(), Some("c3"));
        let e = parse_err(r#"{"type":"createRoom","name":" ","members":[],"clientId":"r"}"#);
        assert_eq!(e.error.code, ErrorCode::InvalidRoomName);
        assert_eq!(e.reference.as_deref(), Some("r"));
    }

    #[test]
    fn server_frames_serialise_as_the_protocol_spells_them() {
        let frame = ServerFrame::ChatHistory {
            peer: Some("bob".into()),
            room: None,
            channel: 3,
            messages: vec![],
            has_more: false,
        };
        let json = serde_json::to_value(&frame).expect("serialisable");
        assert_eq!(
            json,
            serde_json::json!({"type":"chatHistory","peer":"bob","channel":3,"messages":[],"hasMore":false})
        );
        let err = ServerFrame::error(ApiError::new(ErrorCode::RateLimited, "slow down"), None);
        assert_eq!(
            serde_json::to_value(&err).expect("serialisable"),
            serde_json::json!({"type":"error","code":"rate_limited","message":"slow down","ref":null})
        );
        let msg = ChatMessage {
            id: MessageId::new(9).expect("in range"),
            channel: 1,
            room: None,
            from: "a".into(),
            to: Some("b".into()),
            text: "t".into(),
            sent_at: DateTime::from_timestamp(0, 0).expect("epoch"),
            client_id: None,
        };
        let json = serde_json::to_value(ServerFrame::ChatMessage { message: msg }).expect("ok");
        assert_eq!(json["message"]["sentAt"], "1970-01-01T00:00:00Z");
        assert_eq!(json["message"]["clientId"], serde_json::Value::Null);
        assert_eq!(json["message"]["room"], serde_json::Value::Null);
        let typing = ServerFrame::Typing {
            from: "a".into(),
            room: None,
        };
        assert_eq!(
            serde_json::to_value(&typing).expect("serialisable"),
            serde_json::json!({"type":"typing","from":"a"})
        );
        let room = ServerFrame::Room {
            room: RoomInfo {
                id: 2,
                name: "n".into(),
                owner: "a".into(),
                members: vec!["a".into()],
                unread: None,
            },
            reference: Some("r1".into()),
        };
        assert_eq!(
            serde_json::to_value(&room).expect("serialisable"),
            serde_json::json!({"type":"room","room":{"id":2,"name":"n","owner":"a","members":["a"]},"ref":"r1"})
        );
        assert_eq!(
            serde_json::to_value(ServerFrame::RoomLeft { room: 2 }).expect("serialisable"),
            serde_json::json!({"type":"roomLeft","room":2})
        );
    }
}
