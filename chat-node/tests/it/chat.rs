//! Chat across nodes: messages, typing, history, clientId, sync, devices, privacy.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{random, Cluster};

fn ids(messages: &Value) -> Vec<u64> {
    messages
        .as_array()
        .expect("messages array")
        .iter()
        .map(|m| m["id"].as_u64().expect("numeric id"))
        .collect()
}

fn texts(messages: &Value) -> Vec<String> {
    messages
        .as_array()
        .expect("messages array")
        .iter()
        .map(|m| m["text"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn messages_and_typing_cross_nodes_in_both_directions() {
    let c = Cluster::start(2).await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(1, "bob").await;
    let mut a = alice.ws().await;
    let mut b = bob.ws().await;
    assert_eq!(
        b.lists(&alice.username),
        Some(true),
        "bob sees alice online: {}",
        b.users
    );
    assert_eq!(a.lists(&bob.username), Some(false), "alice connected first");
    assert_eq!(
        a.lists(&alice.username),
        Some(true),
        "all users, oneself included"
    );

    a.message(&bob.username, "hello bob", "c-1").await;
    let ack = a.expect_type("chatMessage").await["message"].clone();
    let got = b.expect_type("chatMessage").await["message"].clone();
    assert_eq!(ack, got, "sender and receiver see the same message");
    assert_eq!(got["from"], alice.username.as_str());
    assert_eq!(got["to"], bob.username.as_str());
    assert_eq!(got["text"], "hello bob");
    assert_eq!(got["clientId"], "c-1");
    assert!(got["id"].as_u64().is_some_and(|id| id > 0 && id < 1 << 53));
    assert!(got["channel"].as_u64().is_some());
    let sent_at = got["sentAt"].as_str().expect("sentAt");
    assert!(
        chrono::DateTime::parse_from_rfc3339(sent_at).is_ok() && sent_at.ends_with('Z'),
        "RFC 3339 UTC: {sent_at}"
    );

    let reply = b.send_acked(&alice.username, "hi alice").await;
    let got = a.expect_type("chatMessage").await["message"].clone();
    assert_eq!(got, reply);
    assert!(reply["id"].as_u64() > ack["id"].as_u64(), "ids grow");
    assert!(reply["clientId"].is_string());

    a.send(json!({"type": "typing", "peer": bob.username}))
        .await;
    let t = b.expect_type("typing").await;
    assert_eq!(t["from"], alice.username.as_str());
    a.send(json!({"type": "doneTyping", "peer": bob.username}))
        .await;
    let t = b.expect_type("doneTyping").await;
    assert_eq!(t["from"], alice.username.as_str());
    // Typing goes to the peer only, and is never stored.
    a.expect_none("typing", Duration::from_millis(500), |_| true)
        .await;
    assert_eq!(c.count("SELECT COUNT(*) AS n FROM messages").await, 2);
}

#[tokio::test]
async fn a_message_without_client_id_echoes_null() {
    let c = Cluster::start(1).await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(0, "bob").await;
    let mut a = alice.ws().await;
    a.send(json!({"type": "chatMessage", "peer": bob.username, "text": "no id"}))
        .await;
    let m = a.expect_type("chatMessage").await;
    assert_eq!(m["message"]["clientId"], Value::Null);
    // `from` in a frame is ignored: the sender is always the session's user.
    a.send(json!({"type": "chatMessage", "peer": bob.username, "text": "forged", "from": bob.username}))
        .await;
    let m = a.expect_type("chatMessage").await;
    assert_eq!(m["message"]["from"], alice.username.as_str());
}

#[tokio::test]
async fn history_pages_through_25_messages_ten_at_a_time() {
    let c = Cluster::start(2).await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(1, "bob").await;
    let mut a = alice.ws().await;
    for i in 0..25 {
        a.send_acked(&bob.username, &format!("m{i:02}")).await;
    }
    let mut b = bob.ws().await;
    b.send(json!({"type": "chatHistory", "peer": alice.username}))
        .await;
    let page = b.expect_type("chatHistory").await;
    assert_eq!(page["peer"], alice.username.as_str());
    assert!(page["channel"].as_u64().is_some());
    assert_eq!(page["hasMore"], true);
    let first = texts(&page["messages"]);
    assert_eq!(
        first,
        (15..25).map(|i| format!("m{i:02}")).collect::<Vec<_>>()
    );
    let oldest = ids(&page["messages"])[0];

    b.send(json!({"type": "chatHistory", "peer": alice.username, "before": oldest}))
        .await;
    let page = b.expect_type("chatHistory").await;
    assert_eq!(page["hasMore"], true);
    assert_eq!(
        texts(&page["messages"]),
        (5..15).map(|i| format!("m{i:02}")).collect::<Vec<_>>()
    );
    let oldest = ids(&page["messages"])[0];

    b.send(json!({"type": "chatHistory", "peer": alice.username, "before": oldest}))
        .await;
    let page = b.expect_type("chatHistory").await;
    assert_eq!(page["hasMore"], false);
    assert_eq!(
        texts(&page["messages"]),
        (0..5).map(|i| format!("m{i:02}")).collect::<Vec<_>>()
    );
    let got = ids(&page["messages"]);
    assert!(got.windows(2).all(|w| w[0] < w[1]), "oldest first");

    b.send(json!({"type": "chatHistory", "peer": alice.username, "limit": 3}))
        .await;
    let page = b.expect_type("chatHistory").await;
    assert_eq!(texts(&page["messages"]), ["m22", "m23", "m24"]);
}

#[tokio::test]
async fn a_repeated_client_id_is_stored_once_and_acknowledged_again() {
    let c = Cluster::start(2).await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(1, "bob").await;
    let mut a = alice.ws().await;
    let mut b = bob.ws().await;
    a.message(&bob.username, "only once", "retry-1").await;
    let first = a.expect_type("chatMessage").await["message"].clone();
    b.expect_type("chatMessage").await;
    // The client did not see the ack and retries, even from another node.
    let mut a2 = alice.ws_at(&c.url(1)).await;
    a2.message(&bob.username, "only once", "retry-1").await;
    let again = a2.expect_type("chatMessage").await["message"].clone();
    assert_eq!(again, first, "the original is acknowledged again");
    // The stored original is published again (in case its first publication was lost):
    // bob may see it twice, under the same id, never as a second message.
    b.expect_none("chatMessage", Duration::from_millis(700), |f| {
        f["message"] != first
    })
    .await;
    assert_eq!(c.count("SELECT COUNT(*) AS n FROM messages").await, 1);
    // Another sender may use the same clientId.
    b.message(&alice.username, "mine", "retry-1").await;
    let own = b.expect_type("chatMessage").await["message"].clone();
    assert_ne!(own["id"], first["id"]);
    assert_eq!(c.count("SELECT COUNT(*) AS n FROM messages").await, 2);
}

#[tokio::test]
async fn sync_after_a_reconnect_returns_exactly_what_was_missed() {
    let c = Cluster::start(2).await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(1, "bob").await;
    let carol = c.login_new(0, "carol").await;
    let mut a = alice.ws().await;
    let mut b = bob.ws().await;
    let seen = a.send_acked(&bob.username, "before the drop").await;
    b.expect_type("chatMessage").await;
    b.close().await;

    let mut missed = Vec::new();
    for i in 0..3 {
        missed.push(a.send_acked(&bob.username, &format!("missed {i}")).await);
    }
    let mut cw = carol.ws().await;
    missed.push(cw.send_acked(&bob.username, "from carol").await);
    // Not bob's: must not show up in his sync.
    a.send_acked(&carol.username, "alice to carol").await;

    let mut b = bob.ws_at(&c.url(0)).await;
    b.send(json!({"type": "sync", "after": seen["id"]})).await;
    let sync = b.expect_type("sync").await;
    assert_eq!(sync["hasMore"], false);
    assert_eq!(sync["messages"], Value::Array(missed.clone()));

    b.send(json!({"type": "sync", "after": seen["id"], "limit": 2}))
        .await;
    let sync = b.expect_type("sync").await;
    assert_eq!(sync["hasMore"], true);
    assert_eq!(sync["messages"], Value::Array(missed[..2].to_vec()));
}

#[tokio::test]
async fn two_devices_of_one_user_on_two_nodes_both_get_everything() {
    let c = Cluster::start(2).await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(1, "bob").await;
    let mut phone = alice.ws_at(&c.url(0)).await;
    let mut laptop = alice.ws_at(&c.url(1)).await;
    let mut b = bob.ws().await;

    let m = b.send_acked(&alice.username, "to both devices").await;
    assert_eq!(phone.expect_type("chatMessage").await["message"], m);
    assert_eq!(laptop.expect_type("chatMessage").await["message"], m);

    let own = phone.send_acked(&bob.username, "sent from the phone").await;
    assert_eq!(
        laptop.expect_type("chatMessage").await["message"],
        own,
        "own other device"
    );
    assert_eq!(b.expect_type("chatMessage").await["message"], own);
    b.send(json!({"type": "typing", "peer": alice.username}))
        .await;
    phone.expect_type("typing").await;
    laptop.expect_type("typing").await;
}

#[tokio::test]
async fn a_third_user_cannot_read_or_write_someone_elses_conversation() {
    let c = Cluster::start(2).await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(1, "bob").await;
    let eve = c.login_new(1, "eve").await;
    let mut a = alice.ws().await;
    let mut b = bob.ws().await;
    let secret = a.send_acked(&bob.username, "secret").await;
    b.expect_type("chatMessage").await;

    let mut e = eve.ws().await;
    e.send(json!({"type": "sync", "after": 0})).await;
    assert_eq!(e.expect_type("sync").await["messages"], json!([]));
    // Eve's history with alice is her own conversation with alice, not alice and bob's.
    e.send(json!({"type": "chatHistory", "peer": alice.username}))
        .await;
    let h = e.expect_type("chatHistory").await;
    assert_eq!(h["messages"], json!([]));
    assert_ne!(h["channel"], secret["channel"]);
    // Eve cannot write as alice: her message is hers and goes to alice alone.
    e.send(
        json!({"type": "chatMessage", "peer": alice.username, "text": "hi", "from": bob.username}),
    )
    .await;
    let m = e.expect_type("chatMessage").await["message"].clone();
    assert_eq!(m["from"], eve.username.as_str());
    assert_ne!(m["channel"], secret["channel"]);
    b.expect_none("chatMessage", Duration::from_millis(700), |_| true)
        .await;
    assert_eq!(a.expect_type("chatMessage").await["message"], m);
}

#[tokio::test]
async fn the_directory_lists_peers_and_users_who_register_later_still_chat() {
    let c = Cluster::start(2).await;
    let alice = c.login_new(0, "alice").await;
    let mut a = alice.ws().await;
    let late = c.login_new(1, &format!("late{}", random(2))).await;
    let mut l = late.ws().await;
    assert_eq!(l.lists(&alice.username), Some(true));
    // Alice's directory predates `late`; a message from them still arrives, and their
    // presence is followed from then on.
    l.send_acked(&alice.username, "hello, I'm new").await;
    let m = a.expect_type("chatMessage").await;
    assert_eq!(m["message"]["from"], late.username.as_str());
    l.close().await;
    let p = a.expect_type("presence").await;
    assert_eq!(
        p,
        json!({"type": "presence", "username": late.username, "online": false})
    );
}

/// A one-to-one page names sender and recipient from the two users rather than from
/// joins: each message of a page in both directions reads exactly as `sync` (which joins
/// the names) returns it.
#[tokio::test]
async fn a_history_page_reads_each_message_as_sync_does_in_both_directions() {
    let c = Cluster::start(1).await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(0, "bob").await;
    let mut a = alice.ws().await;
    let mut b = bob.ws().await;
    for i in 0..3 {
        a.send_acked(&bob.username, &format!("a{i}")).await;
        b.send_acked(&alice.username, &format!("b{i}")).await;
    }
    a.send(json!({"type": "chatHistory", "peer": bob.username}))
        .await;
    let page = a.expect_type("chatHistory").await;
    a.send(json!({"type": "sync", "after": 0})).await;
    let synced = a.expect_type("sync").await;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(6));
    assert_eq!(page["messages"], synced["messages"]);
    for m in page["messages"].as_array().unwrap() {
        let (from, to) = if m["text"].as_str().unwrap().starts_with('a') {
            (&alice.username, &bob.username)
        } else {
            (&bob.username, &alice.username)
        };
        assert_eq!(m["from"], from.as_str(), "{m}");
        assert_eq!(m["to"], to.as_str(), "{m}");
    }
}
