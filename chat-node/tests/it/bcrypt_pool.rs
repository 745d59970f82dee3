//! bcrypt runs on a bounded pool: past its threads and queue, logins and registrations
//! get 503 with `Retry-After` at once instead of piling up, and the node stays
//! responsive.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::harness::{random, Cluster, PASSWORD};

#[tokio::test]
async fn past_the_bcrypt_queue_logins_and_registrations_get_503_and_the_node_stays_responsive() {
    let c = Cluster::start_with(
        1,
        &[
            ("CHAT_BCRYPT_THREADS", "1"),
            ("CHAT_BCRYPT_QUEUE", "1"),
            ("CHAT_BCRYPT_COST", "12"),
        ],
    )
    .await;
    let tag = random(4);
    // Unknown users: each login runs a real bcrypt check all the same.
    let burst = (0..20).map(|i| {
        let (path, name) = if i % 5 == 0 {
            ("/api/register", format!("new{i}_{tag}"))
        } else {
            ("/api/login", format!("nobody{i}_{tag}"))
        };
        let req = c
            .http
            .post(format!("{}{path}", c.url(0)))
            .json(&json!({"username": name, "password": PASSWORD}));
        async move {
            let r = req.send().await.expect("request");
            let status = r.status().as_u16();
            let retry_after = r.headers().get("retry-after").cloned();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (path, status, retry_after, body)
        }
    });
    let health = async {
        let mut slowest = Duration::ZERO;
        for _ in 0..10 {
            let started = Instant::now();
            let r = c.http.get(format!("{}/healthz", c.url(0))).send().await;
            assert_eq!(r.expect("healthz").status(), 200);
            slowest = slowest.max(started.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        slowest
    };
    let (outcomes, slowest) = tokio::join!(join_all(burst), health);

    let busy: Vec<_> = outcomes.iter().filter(|o| o.1 == 503).collect();
    assert!(!busy.is_empty(), "no 503: {outcomes:?}");
    for (_, _, retry_after, body) in &busy {
        assert!(retry_after.is_some(), "Retry-After: {body}");
        assert_eq!(body["error"]["code"], "unavailable");
    }
    for (path, status, _, body) in &outcomes {
        let done = if *path == "/api/login" { 401 } else { 201 };
        assert!([done, 503].contains(status), "{path}: {status} {body}");
    }
    assert!(outcomes.iter().any(|o| o.1 != 503), "some were served");
    assert!(
        slowest < Duration::from_millis(500),
        "/healthz took {slowest:?}"
    );
}
