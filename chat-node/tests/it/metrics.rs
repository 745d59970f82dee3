//! `/metrics` shows real values after a chat.

use crate::harness::Cluster;

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn counters_move_after_a_chat() {
    let c = Cluster::start(2).await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(1, "bob").await;
    let mut a = alice.ws().await;
    let mut b = bob.ws().await;
    for i in 0..3 {
        a.send_acked(&bob.username, &format!("m{i}")).await;
        b.expect_type("chatMessage").await;
    }
    a.send(serde_json::json!({"type": "chatMessage", "peer": bob.username, "text": " "}))
        .await;
    a.expect_type("error").await;

    let scrape = |i: usize| c.http.get(c.nodes[i].metrics_url()).send();
    let m0 = scrape(0).await.unwrap().text().await.unwrap();
    let m1 = scrape(1).await.unwrap().text().await.unwrap();
    assert_eq!(value(&m0, "chat_messages_received_total"), 3.0);
    assert_eq!(value(&m0, "chat_messages_stored_total"), 3.0);
    assert_eq!(value(&m0, "chat_messages_published_total"), 3.0);
    // Node 0 delivered the acks, node 1 the copies for bob.
    assert_eq!(value(&m0, "chat_messages_delivered_total"), 3.0);
    assert_eq!(value(&m1, "chat_messages_delivered_total"), 3.0);
    assert_eq!(value(&m0, "chat_ws_connections"), 1.0);
    assert_eq!(value(&m0, "chat_connected_users"), 1.0);
    assert_eq!(value(&m1, "chat_fanout_latency_seconds_count"), 3.0);
    // Each message was acknowledged before the next was sent: three batches of one,
    // each published as one pipeline.
    assert_eq!(value(&m0, "chat_db_write_seconds_count"), 3.0);
    assert_eq!(value(&m0, "chat_writer_batch_size_count"), 3.0);
    assert_eq!(value(&m0, "chat_writer_batch_size_sum"), 3.0);
    assert_eq!(value(&m0, "chat_redis_publish_seconds_count"), 3.0);
    assert_eq!(
        value(&m0, "chat_client_errors_total{code=\"empty_message\"}"),
        1.0
    );
    assert!(value(&m0, "chat_presence_changes_total{state=\"online\"}") >= 1.0);
    assert!(
        value(
            &m0,
            "chat_http_requests_total{route=\"/api/login\",status=\"200\"}"
        ) >= 1.0
    );
    assert!(value(&m0, "chat_db_pool_size") >= 1.0);
    assert!(value(&m0, "chat_redis_pool_size") >= 1.0);
    // The writer and the publisher keep connections of their own; the pools serve the
    // conversation lookup, sessions and presence.
    assert!(value(&m0, "chat_db_pool_wait_seconds_count") >= 1.0);
    assert!(value(&m0, "chat_redis_pool_wait_seconds_count") >= 1.0);
    assert!(m0.contains("chat_fanout_latency_seconds_bucket{le=\"0.001\"}"));
    assert!(m0.contains("chat_fanout_latency_seconds_bucket{le=\"5\"}"));
}
