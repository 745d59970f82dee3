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
    pub from: String,
    pub to: String,
    pub text: String,
    pub sent_at: DateTime<Utc>,
    pub client_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ClientFrame {
    ChatHistory {
        peer: String,
        #[serde(default)]
        before: Option<MessageId>,
        #[serde(default)]
        limit: Option<u32>,
    },
    ChatMessage {
        peer: String,
        text: String,
        #[serde(default)]
        client_id: Option<String>,
    },
    Typing {
        peer: String,
    },
    DoneTyping {
        peer: String,
    },
    Sync {
        after: MessageId,
        #[serde(default)]
        limit: Option<u32>,
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
        peer: String,
        channel: u64,
        messages: Vec<ChatMessage>,
        has_more: bool,
    },
    ChatMessage {
        message: ChatMessage,
    },
    Typing {
        from: String,
    },
    DoneTyping {
        from: String,
    },
    Sync {
        messages: Vec<ChatMessage>,
        has_more: bool,
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

    fn check(&self) -> Result<(), ApiError> {
        let bad = |m: String| ApiError::new(ErrorCode::BadRequest, m);
        match self {
            Self::ChatHistory { limit, .. } => match limit {
                Some(l) if !(1..=HISTORY_MAX_LIMIT).contains(l) => {
                    Err(bad(format!("limit is 1 to {HISTORY_MAX_LIMIT}")))
                }
                _ => Ok(()),
            },
            Self::Sync { limit, .. } => match limit {
                Some(l) if !(1..=SYNC_MAX_LIMIT).contains(l) => {
                    Err(bad(format!("limit is 1 to {SYNC_MAX_LIMIT}")))
                }
                _ => Ok(()),
            },
            Self::ChatMessage {
                text, client_id, ..
            } => {
                if let Some(id) = client_id {
                    validate::client_id(id)?;
                }
                validate::message_text(text)
            }
            Self::Typing { .. } | Self::DoneTyping { .. } => Ok(()),
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
                peer: "bob".into(),
                text: "hi".into(),
                client_id: Some("c1".into()),
            })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"chatHistory","peer":"bob","before":7,"limit":5}"#),
            Ok(ClientFrame::ChatHistory {
                peer: "bob".into(),
                before: MessageId::new(7).ok(),
                limit: Some(5),
            })
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"doneTyping","peer":"bob"}"#),
            Ok(ClientFrame::DoneTyping { peer: "bob".into() })
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
                peer: "bob".into(),
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
    }

    #[test]
    fn server_frames_serialise_as_the_protocol_spells_them() {
        let frame = ServerFrame::ChatHistory {
            peer: "bob".into(),
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
            from: "a".into(),
            to: "b".into(),
            text: "t".into(),
            sent_at: DateTime::from_timestamp(0, 0).expect("epoch"),
            client_id: None,
        };
        let json = serde_json::to_value(ServerFrame::ChatMessage { message: msg }).expect("ok");
        assert_eq!(json["message"]["sentAt"], "1970-01-01T00:00:00Z");
        assert_eq!(json["message"]["clientId"], serde_json::Value::Null);
    }
}
