//! Presence across nodes: online, offline, several devices, and nodes that die.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::Cluster;

#[tokio::test]
async fn presence_changes_reach_other_nodes() {
    let c = Cluster::start(2).await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(1, "bob").await;
    let mut a = alice.ws().await;
    let b = bob.ws().await;
    let p = a.expect_type("presence").await;
    assert_eq!(
        p,
        json!({"type": "presence", "username": bob.username, "online": true})
    );
    b.close().await;
    let p = a.expect_type("presence").await;
    assert_eq!(
        p,
        json!({"type": "presence", "username": bob.username, "online": false})
    );
    let users: serde_json::Value = alice.get("/api/users").await.json().await.unwrap();
    let listed = users["users"].as_array().unwrap();
    assert!(listed
        .iter()
        .any(|u| u["username"] == bob.username && u["online"] == false));
    assert!(listed
        .iter()
        .any(|u| u["username"] == alice.username && u["online"] == true));
}

#[tokio::test]
async fn a_user_stays_online_while_any_device_is_connected() {
    let c = Cluster::start(2).await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(1, "bob").await;
    let mut a = alice.ws().await;
    let b1 = bob.ws_at(&c.url(0)).await;
    let b2 = bob.ws_at(&c.url(1)).await;
    a.expect("presence", |p| p["online"] == true).await;
    b1.close().await;
    a.expect_none("presence", Duration::from_secs(1), |_| true)
        .await;
    b2.close().await;
    a.expect("presence", |p| p["online"] == false).await;
}

#[tokio::test]
async fn a_reload_on_the_same_node_never_leaves_the_user_offline() {
    let c = Cluster::start(2).await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(1, "bob").await;
    let _a = alice.ws().await;
    for _ in 0..5 {
        let b = bob.ws().await;
        drop(b);
    }
    let b = bob.ws().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let users: serde_json::Value = alice.get("/api/users").await.json().await.unwrap();
    let online = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == bob.username)
        .map(|u| u["online"].clone());
    assert_eq!(online, Some(json!(true)));
    drop(b);
}

#[tokio::test]
async fn users_of_a_killed_node_go_offline_within_30_seconds() {
    let mut c = Cluster::start(2).await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(1, "bob").await;
    let mut a = alice.ws().await;
    let _b = bob.ws().await;
    a.expect("presence", |p| p["online"] == true).await;
    let killed = Instant::now();
    c.kill(1);
    let deadline = Duration::from_secs(30);
    let p = loop {
        let left = deadline.saturating_sub(killed.elapsed());
        let frame = a
            .try_next(left)
            .await
            .expect("bob shown offline within 30 s of SIGKILL");
        if frame["type"] == "presence" {
            break frame;
        }
    };
    assert_eq!(
        p,
        json!({"type": "presence", "username": bob.username, "online": false})
    );
    assert!(killed.elapsed() < deadline);
    assert!(c
        .redis_keys(&format!("presence:node:{}", c.nodes[1].id))
        .await
        .is_empty());
}

#[tokio::test]
async fn users_who_register_later_appear_for_connected_users() {
    let c = Cluster::start(2).await;
    let alice = c.login_new(0, "alice").await;
    let mut a = alice.ws().await;
    let bob = c.login_new(1, "bob").await;
    let p = a.expect_type("presence").await;
    assert_eq!(
        p,
        json!({"type": "presence", "username": bob.username, "online": false})
    );
    let _b = bob.ws().await;
    let p = a.expect_type("presence").await;
    assert_eq!(
        p,
        json!({"type": "presence", "username": bob.username, "online": true})
    );
}

#[tokio::test]
async fn beyond_1000_users_the_directory_starts_with_peers_and_presence_follows_it() {
    let c = Cluster::start(2).await;
    let alice = c.login_new(0, "alice").await;
    let peer = c.login_new(1, "zz_peer").await;
    let stranger = c.login_new(1, "zz_stranger").await;
    let mut p = peer.ws().await;
    p.send_acked(&alice.username, "we have a conversation")
        .await;
    drop(p);
    {
        use diesel_async::RunQueryDsl;
        let mut conn = c.db().await;
        diesel::sql_query(
            "INSERT INTO users (username, password_hash) \
             SELECT CONCAT('filler_', LPAD(seq, 4, '0')), 'x' FROM seq_1_to_1000",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }

    let mut a = alice.ws().await;
    let listed: Vec<&str> = a.users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), 1000);
    assert_eq!(listed[0], peer.username, "conversation peers first");
    assert_eq!(listed[1], alice.username, "then everyone else by username");
    assert_eq!(listed[2], "filler_0001");
    assert!(!listed.contains(&stranger.username.as_str()), "1000 in all");

    // The stranger is not in alice's list: their presence does not reach her; the peer's does.
    let s = stranger.ws().await;
    let _p = peer.ws().await;
    let frame = a.expect_type("presence").await;
    assert_eq!(
        frame,
        json!({"type": "presence", "username": peer.username, "online": true})
    );
    drop(s);
    a.expect_none("presence", Duration::from_secs(1), |f| {
        f["username"] == stranger.username
    })
    .await;
}
