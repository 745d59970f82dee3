//! `CHAT_MIGRATE_ON_START=false`, for deployments where a migration job owns the schema
//! and nodes run with DML rights only: a node never creates the database or a table, and
//! refuses to start (exits non-zero, saying to run `chat-node migrate`) until every
//! migration it embeds has been applied; once they are, it starts as usual.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;

use crate::harness::{free_port, random, SHARED_DB_BASE, SHARED_REDIS_URL};

/// Databases dropped and a node process killed when the test ends, also on panic.
struct Cleanup {
    dbs: Vec<String>,
    users: Vec<String>,
    node: Option<Child>,
    log: std::path::PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut child) = self.node.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for user in &self.users {
            let _ = Command::new("mariadb")
                .args(["-uroot", "-h127.0.0.1", "-e"])
                .arg(format!("DROP USER IF EXISTS '{user}'@'%'"))
                .status();
        }
        for db in &self.dbs {
            let _ = Command::new("mariadb")
                .args(["-uroot", "-h127.0.0.1", "-e"])
                .arg(format!("DROP DATABASE IF EXISTS `{db}`"))
                .status();
        }
        // Keys the node that started left in the shared Redis (prefix `test_<db>`).
        let _ = Command::new("sh")
            .arg("-c")
            .arg(
                "redis-cli --scan --pattern 'test_chat_test_nomig_*:*' \
                 | xargs -r redis-cli del >/dev/null",
            )
            .stderr(Stdio::null())
            .status();
        if std::thread::panicking() {
            eprintln!("node log kept: {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

async fn query_count(sql: &str) -> i64 {
    let mut conn = mysql_async::Conn::from_url(format!("{SHARED_DB_BASE}/mysql"))
        .await
        .expect("mysql connection");
    let n: Option<i64> = conn.query_first(sql).await.expect("count query");
    let _ = conn.disconnect().await;
    n.unwrap_or(0)
}

async fn tables_in(db: &str) -> i64 {
    query_count(&format!(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{db}'"
    ))
    .await
}

async fn database_exists(db: &str) -> bool {
    query_count(&format!(
        "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = '{db}'"
    ))
    .await
        > 0
}

/// Starts a node on `db` without migrations at start-up; its output goes to `log`.
fn start_node(db: &str, port: u16, log: &std::path::Path) -> Child {
    start_node_on(&format!("{SHARED_DB_BASE}/{db}"), false, port, log)
}

fn start_node_on(url: &str, migrate_on_start: bool, port: u16, log: &std::path::Path) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("node log file");
    Command::new(env!("CARGO_BIN_EXE_chat-node"))
        .env("CHAT_LISTEN", format!("127.0.0.1:{port}"))
        .env("CHAT_METRICS_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("DATABASE_URL", url)
        .env("REDIS_URL", SHARED_REDIS_URL)
        .env(
            "CHAT_REDIS_PREFIX",
            format!("test_chat_test_nomig_{}", random(8)),
        )
        .env("CHAT_SESSION_KEY", random(64))
        .env("CHAT_MIGRATE_ON_START", migrate_on_start.to_string())
        .env("CHAT_WORKERS", "1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().expect("log handle")))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("chat-node starts")
}

/// Waits for the node to exit; its status, or `None` if it still runs after `bound`.
async fn exit_within(child: &mut Child, bound: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_migrate_on_start_a_node_creates_nothing_and_refuses_an_unmigrated_schema() {
    let tag = random(8);
    let empty = format!("chat_test_nomig_{tag}");
    let missing = format!("chat_test_nodb_{tag}");
    let mut cleanup = Cleanup {
        dbs: vec![empty.clone(), missing.clone()],
        users: Vec::new(),
        node: None,
        log: std::env::temp_dir().join(format!("{empty}.log")),
    };
    let read_log = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();

    // An empty database: the node exits, says why, and creates no table.
    query_count(&format!("CREATE DATABASE `{empty}`")).await;
    let port = free_port();
    let mut node = start_node(&empty, port, &cleanup.log);
    let status = exit_within(&mut node, Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| !s.success()),
        "a node on an unmigrated database must exit with an error: {status:?}\n{}",
        read_log(&cleanup.log)
    );
    let log = read_log(&cleanup.log);
    assert!(
        log.contains("never migrated") && log.contains("run `chat-node migrate`"),
        "the error says what to do: {log}"
    );
    assert_eq!(tables_in(&empty).await, 0, "no table was created");

    // No database at all: it is not created either.
    let mut node = start_node(&missing, free_port(), &cleanup.log);
    let status = exit_within(&mut node, Duration::from_secs(30)).await;
    assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    assert!(!database_exists(&missing).await, "no database was created");

    // Migrated by `chat-node migrate` (what the migration job runs), the same node starts
    // and becomes ready.
    let migrated = Command::new(env!("CARGO_BIN_EXE_chat-node"))
        .arg("migrate")
        .env("DATABASE_URL", format!("{SHARED_DB_BASE}/{empty}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("chat-node migrate runs");
    assert!(migrated.success());
    let tables = tables_in(&empty).await;
    assert!(tables > 1, "migrated: {tables} tables");

    // A schema one migration behind (a new binary before its migration job ran) is
    // refused too, naming the migration.
    let mut conn = mysql_async::Conn::from_url(format!("{SHARED_DB_BASE}/{empty}"))
        .await
        .expect("mysql connection");
    let (version, run_on): (String, String) = conn
        .query_first(
            "SELECT version, CAST(run_on AS CHAR) FROM __diesel_schema_migrations \
             ORDER BY version DESC LIMIT 1",
        )
        .await
        .expect("applied migrations")
        .expect("one applied migration");
    conn.exec_drop(
        "DELETE FROM __diesel_schema_migrations WHERE version = ?",
        (&version,),
    )
    .await
    .expect("forget the last migration");
    let mut node = start_node(&empty, free_port(), &cleanup.log);
    let status = exit_within(&mut node, Duration::from_secs(30)).await;
    assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    let log = read_log(&cleanup.log);
    assert!(
        log.contains("1 migration(s) not applied"),
        "the error names the missing migration: {log}"
    );
    conn.exec_drop(
        "INSERT INTO __diesel_schema_migrations (version, run_on) VALUES (?, ?)",
        (&version, &run_on),
    )
    .await
    .expect("restore the last migration");
    let _ = conn.disconnect().await;
    let port = free_port();
    cleanup.node = Some(start_node(&empty, port, &cleanup.log));
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .map(|r| r.status().as_u16());
        if matches!(ready, Ok(200)) {
            break;
        }
        if let Some(Ok(Some(status))) = cleanup.node.as_mut().map(Child::try_wait) {
            panic!(
                "the node exited ({status}) on a migrated database:\n{}",
                read_log(&cleanup.log)
            );
        }
        assert!(Instant::now() < deadline, "not ready within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(tables_in(&empty).await, tables, "starting changed no table");
}

/// The dev MariaDB's init script (deploy/k8s), which holds the GRANTs of both users.
const USERS_SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/k8s/overlays/dev/mariadb-init/10-chat-users.sh"
);

/// The GRANTs the Kubernetes manifests document, on a real MariaDB: run as the MariaDB
/// image runs it, the init script makes a migration user that can migrate, and a node user
/// that serves everything (accounts, chat across nodes, sync, history) with DML rights
/// alone, cannot change the schema, and so cannot start with migrations at start-up on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_k8s_grants_let_the_job_migrate_and_nodes_serve_with_dml_rights_only() {
    let tag = random(8);
    let db = format!("chat_test_grants_{tag}");
    let (node_user, job_user) = (format!("ct_node_{tag}"), format!("ct_job_{tag}"));
    let (node_pw, job_pw) = (random(24), random(24));
    let mut cleanup = Cleanup {
        dbs: vec![db.clone()],
        users: vec![node_user.clone(), job_user.clone()],
        node: None,
        log: std::env::temp_dir().join(format!("{db}.log")),
    };
    let read_log = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();

    // Sourced with docker_process_sql defined, as the image's entrypoint does.
    let init = Command::new("bash")
        .arg("-c")
        .arg(
            r#"set -euo pipefail
            docker_process_sql() { mariadb -uroot -h127.0.0.1 -P3306 "$@"; }
            . "$0""#,
        )
        .arg(USERS_SCRIPT)
        .env("CHAT_DB_NAME", &db)
        .env("CHAT_DB_USER", &node_user)
        .env("CHAT_DB_PASSWORD", &node_pw)
        .env("CHAT_MIGRATE_DB_USER", &job_user)
        .env("CHAT_MIGRATE_DB_PASSWORD", &job_pw)
        .status()
        .expect("bash runs the init script");
    assert!(init.success(), "the init script failed");
    let server = SHARED_DB_BASE.trim_start_matches("mysql://root@");
    let node_url = format!("mysql://{node_user}:{node_pw}@{server}/{db}");
    let job_url = format!("mysql://{job_user}:{job_pw}@{server}/{db}");

    // The Job migrates.
    let migrated = Command::new(env!("CARGO_BIN_EXE_chat-node"))
        .arg("migrate")
        .env("DATABASE_URL", &job_url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("chat-node migrate runs");
    assert!(migrated.success(), "the migration user can migrate");
    let tables = tables_in(&db).await;
    assert!(tables > 1, "migrated: {tables} tables");

    // The node user cannot change the schema...
    let mut conn = mysql_async::Conn::from_url(&node_url)
        .await
        .expect("the node user connects");
    let ddl = conn.query_drop("CREATE TABLE intruder (id INT)").await;
    let error = ddl
        .expect_err("the node user must not create tables")
        .to_string();
    assert!(error.contains("denied"), "{error}");
    let _ = conn.disconnect().await;
    // ...so with migrations at start-up on, a node refuses to start.
    let mut node = start_node_on(&node_url, true, free_port(), &cleanup.log);
    let status = exit_within(&mut node, Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| !s.success()),
        "a DML-only node that tries to migrate exits: {status:?}"
    );
    assert!(read_log(&cleanup.log).contains("denied"));
    assert_eq!(tables_in(&db).await, tables);

    // With migrations off, two nodes serve everything as the node user.
    let c = crate::harness::Cluster::start_with(
        2,
        &[
            ("DATABASE_URL", node_url.as_str()),
            ("CHAT_MIGRATE_ON_START", "false"),
        ],
    )
    .await;
    let alice = c.login_new(0, "alice").await;
    let bob = c.login_new(1, "bob").await;
    let mut a = alice.ws().await;
    let mut b = bob.ws().await;
    let sent = a.send_acked(&bob.username, "over DML rights").await;
    let got = b.expect_type("chatMessage").await;
    assert_eq!(got["message"], sent);
    b.send(serde_json::json!({"type": "sync", "after": 0}))
        .await;
    assert_eq!(b.expect_type("sync").await["messages"][0], sent);
    a.send(serde_json::json!({"type": "chatHistory", "peer": bob.username}))
        .await;
    assert_eq!(a.expect_type("chatHistory").await["messages"][0], sent);
    assert_eq!(
        alice
            .post("/api/logout", serde_json::json!({}))
            .await
            .status(),
        204
    );
    cleanup.node = None;
}
