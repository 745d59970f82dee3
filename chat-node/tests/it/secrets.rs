//! Secrets and defaults: no node without a session key unless `--dev`, a Secure session
//! cookie unless `--dev`, and a logout that kills the session even when closing its
//! sockets fails.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{free_port, random, Cluster, SHARED_DB_BASE};

/// A node started by hand, without the harness' session key; killed, its database and
/// Redis keys removed, when dropped.
struct BareNode {
    child: Child,
    url: String,
    db: String,
    prefix: String,
}

impl BareNode {
    fn spawn(env: &[(&str, &str)]) -> Self {
        let tag = random(10);
        let db = format!("chat_test_{tag}");
        let prefix = format!("test_{tag}");
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chat-node"));
        cmd.env_remove("CHAT_SESSION_KEY")
            .env_remove("CHAT_DEV")
            .env("CHAT_LISTEN", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", format!("{SHARED_DB_BASE}/{db}"))
            .env("CHAT_REDIS_PREFIX", &prefix)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self {
            child: cmd.spawn().expect("chat-node starts"),
            url: format!("http://127.0.0.1:{port}"),
            db,
            prefix,
        }
    }

    /// The exit status and what the node wrote to stderr, if it exits within `bound`.
    async fn exit(&mut self, bound: Duration) -> Option<(std::process::ExitStatus, String)> {
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return Some((status, stderr));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Drop for BareNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("mariadb")
            .args(["-uroot", "-h127.0.0.1", "-P3306", "-e"])
            .arg(format!("DROP DATABASE IF EXISTS `{}`", self.db))
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "redis-cli --scan --pattern '{}:*' | xargs -r redis-cli del >/dev/null",
                self.prefix
            ))
            .status();
    }
}

#[tokio::test]
async fn a_node_without_a_session_key_exits_non_zero_unless_dev() {
    let mut refused = BareNode::spawn(&[]);
    let (status, stderr) = refused
        .exit(Duration::from_secs(20))
        .await
        .expect("the node exits at once without CHAT_SESSION_KEY");
    assert!(!status.success(), "{status}");
    assert!(stderr.contains("CHAT_SESSION_KEY"), "says why: {stderr}");

    let mut dev = BareNode::spawn(&[("CHAT_DEV", "true")]);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = http.get(format!("{}/readyz", dev.url)).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            dev.exit(Duration::ZERO).await.is_none(),
            "a --dev node runs"
        );
        assert!(Instant::now() < deadline, "the --dev node became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn set_cookie(r: &reqwest::Response) -> String {
    r.headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn the_session_cookie_is_secure_unless_dev() {
    for (env, secure) in [(&[][..], true), (&[("CHAT_DEV", "true")][..], false)] {
        let c = Cluster::start_with(1, env).await;
        let u = c.user(0);
        let name = format!("sam_{}", random(4));
        assert_eq!(
            u.register(&name, crate::harness::PASSWORD).await.status(),
            201
        );
        let r = u.login(&name, crate::harness::PASSWORD).await;
        assert_eq!(r.status(), 200);
        let cookie = set_cookie(&r);
        assert!(cookie.starts_with("chat_session="), "{cookie}");
        assert_eq!(cookie.contains("; Secure"), secure, "{env:?}: {cookie}");
        assert!(cookie.contains("HttpOnly"), "{cookie}");
    }
}

/// A Redis user that may do everything but PUBLISH, deleted when dropped.
struct NoPublishUser {
    name: String,
    url: String,
}

impl NoPublishUser {
    fn create() -> Self {
        let name = format!("chat_test_{}", random(10));
        let password = random(24);
        let ok = Command::new("redis-cli")
            .args(["ACL", "SETUSER", &name, "on", &format!(">{password}")])
            .args(["~*", "&*", "+@all", "-publish"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ACL SETUSER");
        Self {
            url: format!("redis://{name}:{password}@127.0.0.1:6379"),
            name,
        }
    }
}

impl Drop for NoPublishUser {
    fn drop(&mut self) {
        let _ = Command::new("redis-cli")
            .args(["ACL", "DELUSER", &self.name])
            .stdout(Stdio::null())
            .status();
    }
}

#[tokio::test]
async fn logout_purges_the_session_even_when_closing_its_sockets_fails() {
    let redis_user = NoPublishUser::create();
    let mut conn = redis::Client::open(redis_user.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let publish = redis::cmd("PUBLISH")
        .arg("x")
        .arg("y")
        .query_async::<i64>(&mut conn)
        .await;
    assert!(publish.is_err(), "this Redis user cannot publish");

    let c = Cluster::start_with(1, &[("REDIS_URL", &redis_user.url)]).await;
    let u = c.login_new(0, "lou").await;
    assert_eq!(c.redis_keys("session:*").await.len(), 1);
    let r = u.post("/api/logout", Value::Null).await;
    assert_eq!(
        r.status(),
        204,
        "publishing the logout failed, the logout did not"
    );
    assert!(c.redis_keys("session:*").await.is_empty());
    assert_eq!(u.get("/api/me").await.status(), 401);
}
