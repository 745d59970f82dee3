//! Internal endpoints: `/metrics` only on the internal listener, and `/readyz` answered
//! from a state refreshed in the background, never by a ping per probe.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::Cluster;
use crate::mariadb::MariaDb;

#[tokio::test]
async fn metrics_are_served_on_the_internal_listener_and_404_on_the_public_port() {
    let c = Cluster::start(1).await;
    let r = c
        .http
        .get(format!("{}/metrics", c.url(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");

    let r = c.http.get(c.nodes[0].metrics_url()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("chat_ws_connections"));
    // The internal listener serves nothing else.
    let internal = c.nodes[0].metrics_url().replace("/metrics", "");
    for path in ["/", "/api/me", "/readyz"] {
        let r = c
            .http
            .get(format!("{internal}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
}

fn signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -s {signal} {pid}");
}

/// `/readyz`'s status and body, and how long it took to answer.
async fn ready(c: &Cluster) -> (u16, Value, Duration) {
    let started = Instant::now();
    let r = c
        .http
        .get(format!("{}/readyz", c.url(0)))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("readyz answers");
    let status = r.status().as_u16();
    (
        status,
        r.json().await.unwrap_or(Value::Null),
        started.elapsed(),
    )
}

/// Polls `/readyz` until it answers `status`; every answer must come fast.
async fn wait_ready(c: &Cluster, status: u16, bound: Duration) -> Value {
    let deadline = Instant::now() + bound;
    loop {
        let (got, body, took) = ready(c).await;
        assert!(took < Duration::from_millis(300), "/readyz took {took:?}");
        if got == status {
            return body;
        }
        assert!(Instant::now() < deadline, "/readyz still {got} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn readyz_answers_at_once_from_a_background_check_that_follows_a_hung_mysql() {
    let mut db = MariaDb::start().await;
    let c = Cluster::start_on(1, &[], &db.base_url()).await;
    wait_ready(&c, 200, Duration::from_secs(5)).await;

    // A paused server accepts connections and never answers: a ping per probe would
    // hang for its whole timeout.
    let pid = db.pid().expect("mariadbd runs");
    signal(pid, "STOP");
    let body = wait_ready(&c, 503, Duration::from_secs(4)).await;
    assert_eq!(body, json!({"mysql": false, "redis": true}));
    for _ in 0..10 {
        let (status, _, took) = ready(&c).await;
        assert_eq!(status, 503);
        assert!(took < Duration::from_millis(300), "/readyz took {took:?}");
    }

    signal(pid, "CONT");
    let body = wait_ready(&c, 200, Duration::from_secs(15)).await;
    assert_eq!(body, json!({"mysql": true, "redis": true}));
    db.kill();
}
