//! Every HTTP route of PROTOCOL.md with its error codes.

use serde_json::{json, Value};

use crate::harness::{random, Cluster, User, PASSWORD};

async fn error_code(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("error bodies are JSON");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error has a message: {body}"
    );
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

#[tokio::test]
async fn register_returns_201_and_rejects_bad_input_with_codes() {
    let c = Cluster::start(1).await;
    let u = c.user(0);
    let name = format!("Al.ice-{}", random(4));
    let r = u.register(&name, PASSWORD).await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["username"], name.as_str(), "stored as typed");
    assert!(body["id"].as_u64().is_some());

    let cases = [
        (
            json!({"username": "ab", "password": PASSWORD}),
            400,
            "invalid_username",
        ),
        (
            json!({"username": "has space", "password": PASSWORD}),
            400,
            "invalid_username",
        ),
        (
            json!({"username": "x".repeat(33), "password": PASSWORD}),
            400,
            "invalid_username",
        ),
        (
            json!({"username": "okname", "password": "short"}),
            400,
            "invalid_password",
        ),
        (
            json!({"username": "okname", "password": "p".repeat(73)}),
            400,
            "invalid_password",
        ),
        (json!({"username": "okname"}), 400, "invalid_body"),
        (
            json!({"username": 5, "password": PASSWORD}),
            400,
            "invalid_body",
        ),
        (
            json!({"username": name.to_uppercase(), "password": PASSWORD}),
            409,
            "username_taken",
        ),
    ];
    for (body, status, code) in cases {
        let r = u.post("/api/register", body.clone()).await;
        assert_eq!(error_code(r).await, (status, code.to_owned()), "{body}");
    }
    let r = u
        .http
        .post(format!("{}/api/register", c.url(0)))
        .body("not json")
        .header("Content-Type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, (400, "invalid_body".to_owned()));
    let r = u
        .http
        .post(format!("{}/api/register", c.url(0)))
        .body(r#"{"username":"abc","password":"12345678"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (400, "invalid_body".to_owned()),
        "no content type"
    );
    assert_eq!(c.count("SELECT COUNT(*) AS n FROM users").await, 1);
}

#[tokio::test]
async fn login_sets_a_session_cookie_that_every_node_accepts() {
    let c = Cluster::start(2).await;
    let u = c.user(0);
    let name = format!("bob_{}", random(4));
    u.register(&name, PASSWORD).await;
    let r = u.login(&name.to_uppercase(), PASSWORD).await;
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Secure"), "Secure unless --dev: {cookie}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["username"], name.as_str());

    let on_other = u.via(c.url(1));
    let r = on_other.get("/api/me").await;
    assert_eq!(r.status(), 200);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me, body);
    assert_eq!(c.redis_keys("session:*").await.len(), 1);
}

#[tokio::test]
async fn login_renews_the_session_id() {
    let c = Cluster::start(1).await;
    let u = c.user(0);
    let name = format!("carol_{}", random(4));
    u.register(&name, PASSWORD).await;
    u.login(&name, PASSWORD).await;
    let first = u.cookie().expect("cookie after login");
    let keys_before = c.redis_keys("session:*").await;
    u.login(&name, PASSWORD).await;
    let second = u.cookie().expect("cookie after second login");
    assert_ne!(first, second, "a new session id on login");
    let keys_after = c.redis_keys("session:*").await;
    assert_eq!(
        keys_after.len(),
        1,
        "the old session state is gone: {keys_after:?}"
    );
    assert_ne!(keys_before, keys_after);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_401_then_429() {
    let c = Cluster::start_with(1, &[("CHAT_LOGIN_MAX_FAILURES", "3")]).await;
    let u = c.user(0);
    let name = format!("dave_{}", random(4));
    u.register(&name, PASSWORD).await;
    let wrong: Value = u.login(&name, "wrong password").await.json().await.unwrap();
    let unknown_r = u.login("nobody_here", PASSWORD).await;
    assert_eq!(unknown_r.status(), 401);
    let unknown: Value = unknown_r.json().await.unwrap();
    assert_eq!(wrong, unknown, "no hint whether the user exists");
    assert_eq!(wrong["error"]["code"], "invalid_credentials");
    let r = u.login(&name, "wrong again").await;
    assert_eq!(r.status(), 401);
    let r = u.login(&name, "third wrong").await;
    assert_eq!(r.status(), 401);
    // Three failures: even the right password is refused for a while.
    let r = u.login(&name, PASSWORD).await;
    assert_eq!(error_code(r).await, (429, "too_many_attempts".to_owned()));
    assert!(u.cookie().is_none(), "no session was made");
}

#[tokio::test]
async fn logout_destroys_the_session_in_redis() {
    let c = Cluster::start(2).await;
    let u = c.login_new(0, "erin").await;
    assert_eq!(c.redis_keys("session:*").await.len(), 1);
    let r = u.post("/api/logout", Value::Null).await;
    assert_eq!(r.status(), 204);
    assert!(c.redis_keys("session:*").await.is_empty());
    let r = u.via(c.url(1)).get("/api/me").await;
    assert_eq!(error_code(r).await, (401, "unauthenticated".to_owned()));
    // Logging out without a session is harmless.
    let r = c.user(1).post("/api/logout", Value::Null).await;
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn logout_closes_that_sessions_sockets_on_every_node() {
    let c = Cluster::start(2).await;
    let u = c.login_new(0, "fred").await;
    let mut ws_b = u.ws_at(&c.url(1)).await;
    let r = u.post("/api/logout", Value::Null).await;
    assert_eq!(r.status(), 204);
    let code = ws_b.expect_close(std::time::Duration::from_secs(10)).await;
    assert_eq!(code.map(u16::from), Some(1008));
}

#[tokio::test]
async fn me_and_users_require_a_session() {
    let c = Cluster::start(1).await;
    let u = User::new(c.url(0));
    assert_eq!(
        error_code(u.get("/api/me").await).await,
        (401, "unauthenticated".to_owned())
    );
    assert_eq!(
        error_code(u.get("/api/users").await).await,
        (401, "unauthenticated".to_owned())
    );
    let r = u.try_ws_at(&c.url(0), None).await;
    match r {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| "a socket")),
    }
}

fn usernames(page: &Value) -> Vec<&str> {
    page["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect()
}

/// The page after `page`, two users long.
async fn next_page(viewer: &User, page: &Value) -> Value {
    let next = page["next"].as_str().unwrap();
    viewer
        .get(&format!("/api/users?limit=2&after={next}"))
        .await
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn users_are_paged_in_username_order_with_online_state() {
    let c = Cluster::start(2).await;
    let tag = random(4);
    for name in ["delta", "Alpha", "charlie", "bravo", "echo"] {
        let r = c.user(0).register(&format!("{name}_{tag}"), PASSWORD).await;
        assert_eq!(r.status(), 201);
    }
    let viewer = c.user(1);
    viewer.login(&format!("alpha_{tag}"), PASSWORD).await;
    let bravo = c.user(0);
    bravo.login(&format!("bravo_{tag}"), PASSWORD).await;
    let _bravo_ws = bravo.ws().await;

    let page: Value = viewer.get("/api/users?limit=2").await.json().await.unwrap();
    let names = usernames(&page);
    assert_eq!(names, [format!("Alpha_{tag}"), format!("bravo_{tag}")]);
    assert_eq!(
        page["users"][1]["online"], true,
        "bravo has a socket on node 0"
    );
    assert_eq!(page["users"][0]["online"], false);
    assert_eq!(page["next"], format!("bravo_{tag}"));
    let page = next_page(&viewer, &page).await;
    let names = usernames(&page);
    assert_eq!(names, [format!("charlie_{tag}"), format!("delta_{tag}")]);
    let page = next_page(&viewer, &page).await;
    assert_eq!(page["users"].as_array().unwrap().len(), 1);
    assert_eq!(page["next"], Value::Null);

    for bad in ["limit=0", "limit=1001", "limit=abc", "limit=-1"] {
        let r = viewer.get(&format!("/api/users?{bad}")).await;
        assert_eq!(
            error_code(r).await,
            (400, "invalid_query".to_owned()),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn health_metrics_client_and_unknown_routes() {
    let c = Cluster::start(1).await;
    let u = c.user(0);
    assert_eq!(u.get("/healthz").await.status(), 200);
    assert_eq!(u.get("/readyz").await.status(), 200);
    let r = c.http.get(c.nodes[0].metrics_url()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("chat_ws_connections"));
    let r = u.get("/").await;
    assert_eq!(r.status(), 200);
    assert!(r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html")));
    assert!(r.text().await.unwrap().contains("/static/app.js"));
    assert_eq!(u.get("/static/app.js").await.status(), 200);
    assert_eq!(u.get("/static/style.css").await.status(), 200);
    assert_eq!(
        error_code(u.get("/nope").await).await,
        (404, "not_found".to_owned())
    );
}

#[tokio::test]
async fn websocket_from_a_foreign_origin_is_refused_with_403() {
    let c = Cluster::start(1).await;
    let u = c.login_new(0, "gina").await;
    match u.try_ws_at(&c.url(0), Some("http://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| "a socket")),
    }
    let own = c.url(0);
    let mut ok = u
        .try_ws_at(&c.url(0), Some(&own))
        .await
        .expect("own origin allowed");
    assert_eq!(ok.next().await["type"], "updateUsers");
}
