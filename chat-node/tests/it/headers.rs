//! Security headers on every response, errors included; HSTS only when a trusted proxy
//! says the client came over TLS.

use crate::harness::{Cluster, SHARED_DB_BASE};
use crate::redis_server::RedisServer;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    connect-src 'self' ws: wss:; img-src 'self' data:; frame-ancestors 'none'; \
    base-uri 'none'; form-action 'self'";

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn get(c: &Cluster, path: &str, proto: Option<&str>) -> reqwest::Response {
    let mut req = c.http.get(format!("{}{path}", c.url(0)));
    if let Some(proto) = proto {
        req = req.header("X-Forwarded-Proto", proto);
    }
    req.send().await.expect("request")
}

#[tokio::test]
async fn every_response_carries_csp_nosniff_and_no_referrer_but_no_hsts_over_plain_http() {
    let c = Cluster::start(1).await;
    let mut responses = Vec::new();
    for path in [
        "/",
        "/static/app.js",
        "/healthz",
        "/readyz",
        "/api/me",
        "/ws",
        "/nope",
    ] {
        responses.push((path, get(&c, path, None).await));
    }
    // A client cannot claim TLS: it is not a trusted proxy.
    responses.push(("/ (claims https)", get(&c, "/", Some("https")).await));
    let url = format!("{}/api/login", c.url(0));
    let bad_body = c.http.post(&url).body("{").send().await.expect("request");
    responses.push(("/api/login (bad body)", bad_body));
    let encoded = c
        .http
        .post(&url)
        .header("Content-Encoding", "gzip")
        .body("x");
    responses.push(("/api/login (gzip)", encoded.send().await.expect("request")));

    for (what, r) in &responses {
        assert_eq!(header(r, "content-security-policy"), Some(CSP), "{what}");
        assert_eq!(
            header(r, "x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
        assert_eq!(header(r, "referrer-policy"), Some("no-referrer"), "{what}");
        assert_eq!(header(r, "strict-transport-security"), None, "{what}");
    }
    let statuses: Vec<u16> = responses.iter().map(|(_, r)| r.status().as_u16()).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 401, 401, 404, 200, 400, 415]);
}

#[tokio::test]
async fn hsts_when_a_trusted_proxy_says_the_client_came_over_tls() {
    let c = Cluster::start_with(1, &[("CHAT_TRUSTED_PROXIES", "10.0.0.0/8,127.0.0.1")]).await;
    let r = get(&c, "/", Some("https")).await;
    assert_eq!(
        header(&r, "strict-transport-security"),
        Some("max-age=31536000")
    );
    assert_eq!(header(&r, "content-security-policy"), Some(CSP));
    let r = get(&c, "/api/me", Some("https")).await;
    assert_eq!(r.status(), 401);
    assert!(
        header(&r, "strict-transport-security").is_some(),
        "errors too"
    );
    for proto in [None, Some("http")] {
        let r = get(&c, "/", proto).await;
        assert_eq!(header(&r, "strict-transport-security"), None, "{proto:?}");
    }
}

#[tokio::test]
async fn a_session_store_outage_is_a_503_with_the_headers() {
    // Declared first, so it outlives the cluster (whose drop cleans its keys on it).
    let mut redis = RedisServer::start().await;
    let c = Cluster::start_on_servers(1, &[], SHARED_DB_BASE, &redis.url()).await;
    let user = c.login_new(0, "outage").await;
    assert_eq!(user.get("/api/me").await.status(), 200);
    redis.kill();
    let r = user.get("/api/me").await;
    assert_eq!(r.status(), 503, "an outage, not a bug");
    assert_eq!(header(&r, "content-security-policy"), Some(CSP));
    assert_eq!(header(&r, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(&r, "referrer-policy"), Some("no-referrer"));
    let body: serde_json::Value = r.json().await.expect("a JSON body");
    assert_eq!(body["error"]["code"], "unavailable");
    redis.restart().await;
}
