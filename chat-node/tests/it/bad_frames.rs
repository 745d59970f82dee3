//! Every bad frame of PROTOCOL.md gets its error, and the socket keeps working.

use std::time::Duration;

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{Cluster, Ws};

async fn still_works(ws: &mut Ws, peer: &str) {
    let m = ws.send_acked(peer, "still here").await;
    assert_eq!(m["text"], "still here");
}

#[tokio::test]
async fn malformed_frames_get_bad_request_and_lose_nothing() {
    let c = Cluster::start(1).await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(0, "bob").await;
    let mut a = alice.ws().await;
    let bad = [
        "not json".to_owned(),
        "[1,2,3]".to_owned(),
        json!({"type": "dance"}).to_string(),
        json!({"peer": bob.username}).to_string(),
        json!({"type": "chatMessage", "peer": bob.username}).to_string(),
        json!({"type": "chatMessage", "peer": 12, "text": "x"}).to_string(),
        json!({"type": "chatHistory", "peer": bob.username, "limit": 51}).to_string(),
        json!({"type": "chatHistory", "peer": bob.username, "before": "x"}).to_string(),
        json!({"type": "sync"}).to_string(),
        json!({"type": "sync", "after": 1, "limit": 0}).to_string(),
        json!({"type": "typing"}).to_string(),
    ];
    for frame in &bad {
        a.send_raw(Message::text(frame.clone())).await;
        let e = a.expect_type("error").await;
        assert_eq!(e["code"], "bad_request", "{frame} → {e}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    a.send_raw(Message::binary(vec![1u8, 2, 3])).await;
    assert_eq!(a.expect_type("error").await["code"], "bad_request");
    still_works(&mut a, &bob.username).await;
}

#[tokio::test]
async fn content_errors_have_their_codes_and_echo_the_client_id() {
    let c = Cluster::start(1).await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(0, "bob").await;
    let mut a = alice.ws().await;
    let cases = [
        (
            json!({"type": "chatMessage", "peer": bob.username, "text": "  \n ", "clientId": "e1"}),
            "empty_message",
        ),
        (
            json!({"type": "chatMessage", "peer": bob.username, "text": "x".repeat(4001), "clientId": "e2"}),
            "message_too_long",
        ),
        (
            json!({"type": "chatMessage", "peer": "no_such_user", "text": "hi", "clientId": "e3"}),
            "unknown_user",
        ),
        (
            json!({"type": "chatMessage", "peer": alice.username, "text": "me", "clientId": "e4"}),
            "bad_request",
        ),
    ];
    for (frame, code) in cases {
        let reference = frame["clientId"].clone();
        a.send(frame).await;
        let e = a.expect_type("error").await;
        assert_eq!(e["code"], code);
        assert_eq!(e["ref"], reference);
    }
    a.send(json!({"type": "chatHistory", "peer": "ghost_user"}))
        .await;
    let e = a.expect_type("error").await;
    assert_eq!(e["code"], "unknown_user");
    assert_eq!(e["ref"], serde_json::Value::Null);
    a.send(json!({"type": "typing", "peer": "ghost_user"}))
        .await;
    assert_eq!(a.expect_type("error").await["code"], "unknown_user");
    // 4000 characters exactly is fine.
    let m = a.send_acked(&bob.username, &"é".repeat(4000)).await;
    assert_eq!(m["text"].as_str().map(|t| t.chars().count()), Some(4000));
    assert_eq!(c.count("SELECT COUNT(*) AS n FROM messages").await, 1);
}

#[tokio::test]
async fn frames_over_64_kib_close_the_socket_with_1009() {
    let c = Cluster::start(1).await;
    let alice = c.login_new(0, "alice").await;
    let mut a = alice.ws().await;
    let big = json!({"type": "typing", "peer": "x".repeat(70 * 1024)}).to_string();
    a.send_raw(Message::text(big)).await;
    let code = a.expect_close(Duration::from_secs(10)).await;
    assert_eq!(code.map(u16::from), Some(1009));
    // Nothing else was lost: the user reconnects and carries on.
    let bob = c.login_new(0, "bob").await;
    let mut a = alice.ws().await;
    still_works(&mut a, &bob.username).await;
}

#[tokio::test]
async fn flooding_is_rate_limited_and_the_socket_recovers() {
    let c = Cluster::start_with(1, &[("CHAT_WS_RATE", "5"), ("CHAT_WS_BURST", "10")]).await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(0, "bob").await;
    let mut a = alice.ws().await;
    for _ in 0..30 {
        a.send(json!({"type": "typing", "peer": bob.username}))
            .await;
    }
    let e = a.expect_type("error").await;
    assert_eq!(e["code"], "rate_limited");
    tokio::time::sleep(Duration::from_secs(2)).await;
    still_works(&mut a, &bob.username).await;
}
