//! Redis is killed and restarted under traffic. The test runs its own Redis (see
//! `redis_server.rs`) without persistence, so the restarted one is empty: sessions,
//! presence and login counters are gone. Each node notices that its subscription dropped
//! and at once closes its sockets with 1012, queueing nothing more to them (messages
//! published before it subscribes again are not replayed); clients reconnect, find their
//! session gone (401), log in again, `sync`, and resend what was not acknowledged. A
//! sender is acknowledged only through the publication of its message, so what was
//! committed while Redis was down is acknowledged when the retry publishes it, and reaches
//! recipients live or through `sync`.

use std::time::{Duration, Instant};

use super::{ms, ring, Fleet, FAULT_ENV};
use crate::harness::{Cluster, SHARED_DB_BASE};
use crate::redis_server::RedisServer;

const CLIENTS: usize = 8;
const EVERY: Duration = Duration::from_millis(100);
const BEFORE: Duration = Duration::from_secs(2);
const DOWN: Duration = Duration::from_secs(1);
const AFTER: Duration = Duration::from_secs(3);
/// Every client is reconnected, logged in again and synced within this of the restart.
const BACK_BOUND: Duration = Duration::from_secs(15);
const SETTLE_BOUND: Duration = Duration::from_secs(20);

async fn ready(c: &Cluster, i: usize) -> u16 {
    match c.http.get(format!("{}/readyz", c.url(i))).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_under_traffic_sockets_close_1012_clients_log_in_again_nothing_acked_is_lost(
) {
    // Declared first, so it outlives the cluster (whose drop cleans its keys on it).
    let mut redis = RedisServer::start().await;
    let c = Cluster::start_on_servers(2, FAULT_ENV, SHARED_DB_BASE, &redis.url()).await;
    let homes: Vec<usize> = (0..CLIENTS).map(|i| i % 2).collect();
    let mut fleet = Fleet::start(&c, &ring(&homes), EVERY).await;
    tokio::time::sleep(BEFORE).await;

    let all = fleet.clients();
    let acked_before = fleet.acked();
    fleet.note_rss(&c);
    let killed_at = Instant::now();
    redis.kill();
    tokio::time::sleep(DOWN).await;
    let ready_during = [ready(&c, 0).await, ready(&c, 1).await];
    redis.restart().await;
    let restarted_at = Instant::now();
    let back = fleet
        .wait_until(BACK_BOUND, |f| f.back_at(&all, killed_at).is_some())
        .await;
    let back_after_restart = fleet
        .back_at(&all, killed_at)
        .map(|t| t.saturating_duration_since(restarted_at));
    tokio::time::sleep(AFTER.saturating_sub(restarted_at.elapsed())).await;
    let settled = fleet.settle(SETTLE_BOUND).await;
    let ready_after = [ready(&c, 0).await, ready(&c, 1).await];

    let closed_1012 = fleet.clients_where(&all, |l| l.closes.contains(&Some(1012)));
    let logged_in_again = fleet.clients_where(&all, |l| l.relogins >= 1);
    let counts = fleet
        .finish(
            &c,
            "redis_restart",
            &[
                ("down_ms", ms(restarted_at - killed_at)),
                ("back_ms", back_after_restart.map_or("none".into(), ms)),
                ("closed_1012", closed_1012.to_string()),
                ("logged_in_again", logged_in_again.to_string()),
                ("settle_ms", settled.map_or("none".into(), ms)),
            ],
        )
        .await;
    counts.assert_clean();
    assert!(acked_before > 0, "traffic flowed before the kill");
    assert_eq!(ready_during, [503, 503], "readiness while Redis is down");
    assert_eq!(ready_after, [200, 200], "readiness once Redis is back");
    assert!(
        back,
        "not every client was reconnected and synced within {BACK_BOUND:?} of the restart"
    );
    assert!(settled.is_some(), "not settled within {SETTLE_BOUND:?}");
    assert_eq!(closed_1012, all.len(), "every socket closed with 1012");
    assert_eq!(
        logged_in_again,
        all.len(),
        "sessions do not survive a Redis restart without persistence"
    );
}
