//! Login and registration abuse: attempts are counted atomically before bcrypt runs, per
//! username and per client address, shared by every node through Redis; the client
//! address comes from `X-Forwarded-For` only when a trusted proxy sent it.

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::harness::{random, Cluster, PASSWORD};

/// Status, error code (empty on success) and `Retry-After` of a response.
async fn outcome(r: reqwest::Response) -> (u16, String, Option<u64>) {
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
    (status, code, retry_after)
}

/// Posts credentials to `path` of node `node`, from `forwarded_for` when given.
async fn post(
    c: &Cluster,
    node: usize,
    path: &str,
    username: &str,
    password: &str,
    forwarded_for: Option<&str>,
) -> (u16, String, Option<u64>) {
    let mut req = c
        .http
        .post(format!("{}{path}", c.url(node)))
        .json(&json!({"username": username, "password": password}));
    if let Some(xff) = forwarded_for {
        req = req.header("X-Forwarded-For", xff);
    }
    outcome(req.send().await.expect("request")).await
}

async fn login(c: &Cluster, username: &str, password: &str, xff: Option<&str>) -> u16 {
    post(c, 0, "/api/login", username, password, xff).await.0
}

#[tokio::test]
async fn parallel_wrong_passwords_for_one_user_are_checked_at_most_the_limit_times() {
    // A real bcrypt cost, so that the guesses overlap.
    let c = Cluster::start_with(2, &[("CHAT_BCRYPT_COST", "10")]).await;
    let name = format!("victim_{}", random(4));
    assert_eq!(c.user(0).register(&name, PASSWORD).await.status(), 201);

    let guesses = (0..30).map(|i| {
        let (c, name) = (&c, &name);
        async move { post(c, i % 2, "/api/login", name, &format!("guess {i:04}"), None).await }
    });
    let outcomes = join_all(guesses).await;
    let checked = outcomes.iter().filter(|o| o.0 == 401).count();
    let refused: Vec<_> = outcomes.iter().filter(|o| o.0 == 429).collect();
    assert!(
        checked <= 10,
        "{checked} guesses were checked: {outcomes:?}"
    );
    assert_eq!(checked + refused.len(), 30, "{outcomes:?}");
    for (_, code, retry_after) in refused {
        assert_eq!(code, "too_many_attempts");
        assert!(
            retry_after.is_some_and(|s| (1..=300).contains(&s)),
            "{retry_after:?}"
        );
    }
    // The limit holds for the right password too, on either node.
    assert_eq!(login(&c, &name, PASSWORD, None).await, 429);
}

#[tokio::test]
async fn failures_from_one_address_are_limited_across_usernames_and_successes_do_not_count() {
    let c = Cluster::start_with(1, &[("CHAT_LOGIN_MAX_FAILURES_PER_ADDRESS", "5")]).await;
    let name = format!("rita_{}", random(4));
    assert_eq!(c.user(0).register(&name, PASSWORD).await.status(), 201);
    for _ in 0..8 {
        assert_eq!(login(&c, &name, PASSWORD, None).await, 200);
    }
    for i in 0..5 {
        let other = format!("nobody_{i}_{}", random(4));
        assert_eq!(login(&c, &other, "wrong password", None).await, 401);
    }
    let (status, code, retry_after) =
        post(&c, 0, "/api/login", "someone_else", "wrong password", None).await;
    assert_eq!((status, code.as_str()), (429, "too_many_attempts"));
    assert!(retry_after.is_some());
    assert_eq!(
        login(&c, &name, PASSWORD, None).await,
        429,
        "the address is blocked"
    );
}

#[tokio::test]
async fn x_forwarded_for_is_ignored_from_an_untrusted_peer_and_honoured_from_a_trusted_one() {
    let limit = ("CHAT_LOGIN_MAX_FAILURES_PER_ADDRESS", "3");
    // Untrusted: every request counts for 127.0.0.1, whatever it claims.
    let c = Cluster::start_with(1, &[limit]).await;
    for i in 0..3 {
        let xff = format!("198.51.100.{i}");
        assert_eq!(
            login(&c, &format!("u{i}_{}", random(4)), "wrong pass", Some(&xff)).await,
            401
        );
    }
    assert_eq!(
        login(&c, "u9_x", "wrong pass", Some("198.51.100.9")).await,
        429
    );
    drop(c);

    // Trusted: each forwarded address has a count of its own.
    let c = Cluster::start_with(1, &[limit, ("CHAT_TRUSTED_PROXIES", "127.0.0.1")]).await;
    for i in 0..6 {
        let xff = format!("198.51.100.{i}");
        assert_eq!(
            login(&c, &format!("u{i}_{}", random(4)), "wrong pass", Some(&xff)).await,
            401
        );
    }
    for i in 0..3 {
        let user = format!("v{i}_{}", random(4));
        assert_eq!(
            login(&c, &user, "wrong pass", Some("203.0.113.7")).await,
            401
        );
    }
    // What the client wrote left of what the proxy appended is not believed.
    assert_eq!(
        login(&c, "w_x", "wrong pass", Some("203.0.113.7")).await,
        429
    );
    assert_eq!(
        login(&c, "w_y", "wrong pass", Some("192.0.2.1, 203.0.113.7")).await,
        429
    );
    assert_eq!(login(&c, "w_z", "wrong pass", Some("192.0.2.1")).await, 401);
}

#[tokio::test]
async fn registrations_are_limited_per_address() {
    let c = Cluster::start_with(2, &[("CHAT_REGISTER_MAX_PER_ADDRESS", "3")]).await;
    let tag = random(4);
    for i in 0..3 {
        let (status, ..) = post(
            &c,
            i % 2,
            "/api/register",
            &format!("r{i}_{tag}"),
            PASSWORD,
            None,
        )
        .await;
        assert_eq!(status, 201);
    }
    let (status, code, retry_after) =
        post(&c, 1, "/api/register", &format!("r3_{tag}"), PASSWORD, None).await;
    assert_eq!((status, code.as_str()), (429, "too_many_attempts"));
    assert!(
        retry_after.is_some_and(|s| (1..=3600).contains(&s)),
        "{retry_after:?}"
    );
    assert_eq!(c.count("SELECT COUNT(*) AS n FROM users").await, 3);
    // Logging in is another limit.
    assert_eq!(login(&c, &format!("r0_{tag}"), PASSWORD, None).await, 200);
}
