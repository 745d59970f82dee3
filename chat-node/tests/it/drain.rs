//! SIGTERM under traffic: readiness drops at once, sockets close with 1012, nothing
//! acknowledged is unstored, nothing stored is unpublished, and the node exits in time.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::Cluster;

#[tokio::test]
async fn sigterm_drains_a_node_under_traffic() {
    let mut c =
        Cluster::start_with(2, &[("CHAT_WS_RATE", "2000"), ("CHAT_WS_BURST", "2000")]).await;
    let alice = c.login_new(1, "alice").await;
    let bob = c.login_new(0, "bob").await;
    let mut a = alice.ws().await;
    let mut b = bob.ws().await;

    let mut sent = 0u32;
    let mut acked = BTreeSet::new();
    let send_next = |a_sent: &mut u32| {
        *a_sent += 1;
        json!({"type": "chatMessage", "peer": bob.username, "text": format!("m{a_sent}"), "clientId": format!("c{a_sent}")})
    };
    for _ in 0..30 {
        let f = send_next(&mut sent);
        assert!(a.try_send(f).await);
    }
    // Traffic is flowing (one ack back) when the signal comes.
    let first = a.expect_type("chatMessage").await;
    acked.insert(
        first["message"]["clientId"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
    );
    let term_at = Instant::now();
    c.signal(1, "TERM");

    // Readiness turns as soon as the signal is handled (503, or a refused connection once
    // the node stops listening), and never answers 200 again.
    let ready_url = format!("{}/readyz", c.url(1));
    let ready = |http: reqwest::Client, url: String| async move {
        http.get(&url).send().await.map(|r| r.status().as_u16())
    };
    while matches!(ready(c.http.clone(), ready_url.clone()).await, Ok(200)) {
        assert!(
            term_at.elapsed() < Duration::from_millis(500),
            "readiness still 200 half a second after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Keep writing until the node closes the socket.
    let close_code = loop {
        let f = send_next(&mut sent);
        let _ = a.try_send(f).await;
        match a.try_next(Duration::from_millis(5)).await {
            Some(serde_json::Value::Null) => break a.closed,
            Some(frame) if frame["type"] == "chatMessage" => {
                acked.insert(
                    frame["message"]["clientId"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                );
            }
            _ => {}
        }
        assert!(
            term_at.elapsed() < Duration::from_secs(20),
            "socket not closed by the drain"
        );
    };
    assert_eq!(close_code.map(u16::from), Some(1012), "service restart");
    assert!(!matches!(
        ready(c.http.clone(), ready_url.clone()).await,
        Ok(200)
    ));

    // A new socket is not accepted by the draining node.
    if let Ok(mut late) = alice.try_ws_at(&c.url(1), None).await {
        let frame = late.try_next(Duration::from_secs(2)).await;
        assert!(
            matches!(frame, None | Some(serde_json::Value::Null)),
            "draining node served {frame:?}"
        );
    }

    let status = c
        .wait_exit(1, Duration::from_secs(25))
        .await
        .expect("node exits within the bound");
    assert!(status.success(), "clean exit: {status:?}");
    assert!(term_at.elapsed() < Duration::from_secs(21));

    // Everything acknowledged was stored…
    let mut conn = c.db().await;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Varchar>)]
        client_id: Option<String>,
    }
    let stored: BTreeSet<String> = diesel::sql_query("SELECT client_id FROM messages")
        .load::<Row>(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| r.client_id)
        .collect();
    assert!(!acked.is_empty());
    assert!(
        acked.is_subset(&stored),
        "acked but not stored: {:?}",
        acked.difference(&stored)
    );
    // …and everything stored was published to bob, on the node that stayed up.
    let mut delivered = BTreeSet::new();
    while delivered.len() < stored.len() {
        let frame = b.expect_type("chatMessage").await;
        delivered.insert(
            frame["message"]["clientId"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        );
    }
    assert_eq!(delivered, stored);
    // The drained node's users were taken offline with it.
    let online = c
        .redis_keys(&format!("presence:node:{}", c.nodes[1].id))
        .await;
    assert!(online.is_empty());
}
