//! Property tests for what clients send: `ClientFrame::parse` and the validation rules
//! never panic, on any string or any JSON; valid frames round-trip; frames one mistake
//! away from valid get the error PROTOCOL.md names. Bounded, so they run in `cargo test`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chat_common::ids::MAX_SAFE_ID;
use chat_common::protocol::{ClientFrame, FrameError, HISTORY_MAX_LIMIT, SYNC_MAX_LIMIT};
use chat_common::validate::{
    self, is_username_char, CLIENT_ID_MAX_CHARS, MESSAGE_MAX_CHARS, PASSWORD_MAX_BYTES,
    PASSWORD_MIN_BYTES, USERNAME_MAX, USERNAME_MIN,
};
use chat_common::{ErrorCode, MessageId};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const CASES: u32 = 2000;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        ..ProptestConfig::default()
    }
}

/// Any JSON, nested a few levels, with the keys frames use among random ones.
fn any_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("type".to_owned()),
        Just("peer".to_owned()),
        Just("text".to_owned()),
        Just("clientId".to_owned()),
        Just("before".to_owned()),
        Just("after".to_owned()),
        Just("limit".to_owned()),
        ".{0,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop_oneof![
            Just("chatMessage"),
            Just("chatHistory"),
            Just("typing"),
            Just("doneTyping"),
            Just("sync"),
        ]
        .prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn id() -> impl Strategy<Value = MessageId> {
    (0..=MAX_SAFE_ID).prop_map(|raw| MessageId::new(raw).unwrap())
}

/// Text a message may carry: not blank, at most 4000 characters, any characters.
fn message_text() -> impl Strategy<Value = String> {
    (any::<char>(), ".{0,200}", 0..=MESSAGE_MAX_CHARS).prop_map(|(c, rest, pad)| {
        let visible = if c.is_whitespace() { 'x' } else { c };
        let mut text: String = std::iter::once(visible).chain(rest.chars()).collect();
        let room = MESSAGE_MAX_CHARS - text.chars().count();
        text.extend(std::iter::repeat_n('\u{1}', pad.min(room)));
        text
    })
}

fn client_id() -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!(".{{1,{CLIENT_ID_MAX_CHARS}}}")).unwrap()
}

/// Every frame PROTOCOL.md accepts. Peers are any string: whether they exist is the
/// node's question.
fn valid_frame() -> impl Strategy<Value = ClientFrame> {
    let peer = ".{0,40}";
    prop_oneof![
        (
            peer,
            proptest::option::of(id()),
            proptest::option::of(1..=HISTORY_MAX_LIMIT)
        )
            .prop_map(|(peer, before, limit)| ClientFrame::ChatHistory {
                peer: Some(peer),
                room: None,
                before,
                limit
            }),
        (peer, message_text(), proptest::option::of(client_id())).prop_map(
            |(peer, text, client_id)| ClientFrame::ChatMessage {
                peer: Some(peer),
                room: None,
                text,
                client_id
            }
        ),
        peer.prop_map(|peer| ClientFrame::Typing {
            peer: Some(peer),
            room: None
        }),
        peer.prop_map(|peer| ClientFrame::DoneTyping {
            peer: Some(peer),
            room: None
        }),
        (id(), message_text(), proptest::option::of(client_id())).prop_map(
            |(room, text, client_id)| ClientFrame::ChatMessage {
                peer: None,
                room: Some(room.get()),
                text,
                client_id
            }
        ),
        (id(), proptest::option::of(1..=SYNC_MAX_LIMIT))
            .prop_map(|(after, limit)| ClientFrame::Sync { after, limit }),
    ]
}

/// One mistake made to a valid frame, and the error code it must get (`None`: still valid).
#[derive(Debug, Clone)]
enum Mistake {
    DropField(usize),
    WrongType(usize),
    UnknownType(String),
    ExtraField(String),
    LimitOutOfRange(u64),
    IdOutOfRange(bool),
    BlankText(String),
    LongText(usize),
    BadClientId(bool),
}

fn mistake() -> impl Strategy<Value = Mistake> {
    prop_oneof![
        any::<usize>().prop_map(Mistake::DropField),
        any::<usize>().prop_map(Mistake::WrongType),
        "[a-zA-Z]{0,12}".prop_map(Mistake::UnknownType),
        "[a-z]{1,8}".prop_map(Mistake::ExtraField),
        prop_oneof![Just(0u64), 501..u64::MAX].prop_map(Mistake::LimitOutOfRange),
        any::<bool>().prop_map(Mistake::IdOutOfRange),
        "[ \t\n\r\u{a0}\u{3000}]{0,10}".prop_map(Mistake::BlankText),
        (1..200usize).prop_map(Mistake::LongText),
        any::<bool>().prop_map(Mistake::BadClientId),
    ]
}

const KNOWN_TYPES: [&str; 5] = ["chatMessage", "chatHistory", "typing", "doneTyping", "sync"];

/// Applies `mistake` to the JSON of `frame`; the code it must get, or `None` when the
/// mistake does not apply to this frame (or leaves it valid).
fn apply(frame: &ClientFrame, mistake: &Mistake) -> (Value, Option<ErrorCode>) {
    let mut value = serde_json::to_value(frame).unwrap();
    let obj = value.as_object_mut().unwrap();
    // Fields the frame must have, and whether each is a string.
    let required: Vec<(String, bool)> = obj
        .iter()
        .filter(|(k, v)| !v.is_null() && !matches!(k.as_str(), "before" | "limit" | "clientId"))
        .map(|(k, v)| (k.clone(), v.is_string()))
        .collect();
    let present: Vec<(String, bool)> = obj
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.is_string()))
        .collect();
    let code = match mistake {
        Mistake::DropField(i) => {
            let (key, _) = &required[i % required.len()];
            obj.remove(key);
            Some(ErrorCode::BadRequest)
        }
        Mistake::WrongType(i) => {
            let (key, is_string) = &present[i % present.len()];
            let wrong = if *is_string { json!(7) } else { json!("7") };
            obj.insert(key.clone(), wrong);
            Some(ErrorCode::BadRequest)
        }
        Mistake::UnknownType(t) if !KNOWN_TYPES.contains(&t.as_str()) => {
            obj.insert("type".into(), json!(t));
            Some(ErrorCode::BadRequest)
        }
        Mistake::ExtraField(name) if !obj.contains_key(name) => {
            obj.insert(name.clone(), json!({"anything": [1, 2]}));
            None
        }
        Mistake::LimitOutOfRange(l) if obj.contains_key("limit") => {
            let max = u64::from(if obj["type"] == "sync" {
                SYNC_MAX_LIMIT
            } else {
                HISTORY_MAX_LIMIT
            });
            let l = if *l == 0 { 0 } else { max + 1 + l % 1000 };
            obj.insert("limit".into(), json!(l));
            Some(ErrorCode::BadRequest)
        }
        Mistake::IdOutOfRange(negative) => {
            let key = if obj.contains_key("after") {
                "after"
            } else {
                "before"
            };
            let bad = if *negative {
                json!(-1)
            } else {
                json!(MAX_SAFE_ID + 1)
            };
            obj.insert(key.into(), bad);
            // `before` exists on chatHistory only; elsewhere it is an unknown field.
            (key == "after" || obj["type"] == "chatHistory").then_some(ErrorCode::BadRequest)
        }
        Mistake::BlankText(blank) if obj.contains_key("text") => {
            obj.insert("text".into(), json!(blank));
            Some(ErrorCode::EmptyMessage)
        }
        Mistake::LongText(extra) if obj.contains_key("text") => {
            obj.insert("text".into(), json!("y".repeat(MESSAGE_MAX_CHARS + extra)));
            Some(ErrorCode::MessageTooLong)
        }
        Mistake::BadClientId(empty) if obj["type"] == "chatMessage" => {
            let id = if *empty {
                String::new()
            } else {
                "c".repeat(CLIENT_ID_MAX_CHARS + 1)
            };
            obj.insert("clientId".into(), json!(id));
            Some(ErrorCode::BadRequest)
        }
        _ => None,
    };
    (value, code)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_string_parses_or_is_refused_without_panicking(text in any::<String>()) {
        let _ = ClientFrame::parse(&text);
    }

    #[test]
    fn any_json_parses_or_is_refused_without_panicking(value in any_json()) {
        match ClientFrame::parse(&value.to_string()) {
            Ok(_) => prop_assert!(value.is_object()),
            Err(FrameError { error, .. }) => prop_assert!(!error.message.is_empty()),
        }
    }

    #[test]
    fn valid_frames_round_trip(frame in valid_frame()) {
        let text = serde_json::to_string(&frame).unwrap();
        prop_assert_eq!(ClientFrame::parse(&text), Ok(frame));
    }

    #[test]
    fn frames_one_mistake_from_valid_get_the_right_error(
        frame in valid_frame(),
        mistake in mistake(),
    ) {
        let (value, code) = apply(&frame, &mistake);
        let parsed = ClientFrame::parse(&value.to_string());
        match code {
            None => prop_assert!(parsed.is_ok(), "{value} → {parsed:?}"),
            Some(code) => {
                let err = parsed.expect_err("refused");
                prop_assert_eq!(err.error.code, code, "{}", value);
                // A chatMessage's string clientId comes back as `ref`, whatever else failed.
                if let Some(id) = value.get("clientId").and_then(Value::as_str) {
                    prop_assert_eq!(err.reference.as_deref(), Some(id));
                }
            }
        }
    }

    #[test]
    fn usernames_are_valid_exactly_when_the_protocol_says(name in "[a-zA-Z0-9_.\\- é]{0,40}|.{0,40}") {
        let len = name.chars().count();
        let expected = (USERNAME_MIN..=USERNAME_MAX).contains(&len) && name.chars().all(is_username_char);
        prop_assert_eq!(validate::username(&name).is_ok(), expected);
    }

    #[test]
    fn passwords_are_counted_in_bytes(password in ".{0,80}") {
        let expected = (PASSWORD_MIN_BYTES..=PASSWORD_MAX_BYTES).contains(&password.len());
        prop_assert_eq!(validate::password(&password).is_ok(), expected);
    }

    #[test]
    fn message_texts_and_client_ids_follow_their_rules(text in any::<String>(), pad in prop_oneof![0..4100usize, 3990..4010usize]) {
        let text = text + &"\u{1}".repeat(pad);
        let chars = text.chars().count();
        let expected = if text.trim().is_empty() {
            Some(ErrorCode::EmptyMessage)
        } else if chars > MESSAGE_MAX_CHARS {
            Some(ErrorCode::MessageTooLong)
        } else {
            None
        };
        prop_assert_eq!(validate::message_text(&text).err().map(|e| e.code), expected);
        let id_ok = (1..=CLIENT_ID_MAX_CHARS).contains(&chars);
        prop_assert_eq!(validate::client_id(&text).is_ok(), id_ok);
    }
}
