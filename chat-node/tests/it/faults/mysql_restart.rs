//! MySQL is killed and started again under traffic (the test runs its own MariaDB, see
//! `mariadb.rs`): every message sent meanwhile is answered `unavailable` in bounded time,
//! nothing is acknowledged that is not stored, sockets stay open, and the nodes take
//! messages again by themselves once MySQL is back, when clients resend what was
//! refused, with the same clientId. `mysql_outage.rs` checks the same outage message by
//! message; this test gives it the fault suite's counts.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ms, ring, stored_messages, Answer, Fleet, Phase, FAULT_ENV};
use crate::harness::Cluster;
use crate::mariadb::MariaDb;

const CLIENTS: usize = 8;
const EVERY: Duration = Duration::from_millis(100);
const BEFORE: Duration = Duration::from_secs(2);
const DURING: Duration = Duration::from_secs(2);
/// Every message is answered within this of being sent.
const ANSWER_BOUND: Duration = Duration::from_secs(15);
/// After the restart, every refused message is resent and acknowledged within this.
const RECOVERY_BOUND: Duration = Duration::from_secs(20);

async fn ready(c: &Cluster, i: usize) -> (u16, Value) {
    match c.http.get(format!("{}/readyz", c.url(i))).send().await {
        Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
        Err(_) => (0, Value::Null),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_restarted_under_traffic_messages_meanwhile_get_unavailable_and_nodes_recover() {
    // Declared first, so it outlives the cluster (which drops its database on it).
    let mut mysql = MariaDb::start().await;
    let c = Cluster::start_on(2, FAULT_ENV, &mysql.base_url()).await;
    let homes: Vec<usize> = (0..CLIENTS).map(|i| i % 2).collect();
    let mut fleet = Fleet::start(&c, &ring(&homes), EVERY).await;
    tokio::time::sleep(BEFORE).await;

    let acked_before = fleet.acked();
    fleet.note_rss(&c);
    let killed_at = Instant::now();
    mysql.kill();
    tokio::time::sleep(DURING).await;
    fleet.set(Phase::Pause);
    let answered = fleet.wait_until(ANSWER_BOUND, Fleet::all_answered).await;
    let ready_during = [ready(&c, 0).await, ready(&c, 1).await];

    // Every message first sent after the kill was refused, none acknowledged; and the
    // slowest answer of all.
    let (mut during, mut refused, mut slowest) = (0, 0, Duration::ZERO);
    for i in fleet.clients() {
        let log = fleet.log(i);
        for (cid, sent) in &log.sent {
            let answer = log.first_answer.get(cid);
            if let Some((_, at)) = answer {
                slowest = slowest.max(at.duration_since(sent.at));
            }
            if sent.at > killed_at {
                during += 1;
                if matches!(answer, Some((Answer::Unavailable, _))) {
                    refused += 1;
                }
            }
        }
    }

    mysql.restart().await;
    let restarted_at = Instant::now();
    // Refused before the kill landed, yet committed: the retry must not store it twice.
    let stored = stored_messages(&c).await;
    let mut committed_but_refused = 0;
    for i in fleet.clients() {
        let log = fleet.log(i);
        for (cid, (answer, _)) in &log.first_answer {
            let key = (fleet.names[i].clone(), cid.clone());
            if *answer == Answer::Unavailable && stored.contains_key(&key) {
                committed_but_refused += 1;
            }
        }
    }
    let settled = fleet.settle(RECOVERY_BOUND).await;
    // Readiness pings through the pool, whose connections died with the server: it
    // turns back to 200 once the pool has replaced them, within the same bound.
    let mut ready_after = [0, 0];
    while restarted_at.elapsed() < RECOVERY_BOUND {
        ready_after = [ready(&c, 0).await.0, ready(&c, 1).await.0];
        if ready_after == [200, 200] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready_ms = ms(restarted_at.elapsed());

    let counts = fleet
        .finish(
            &c,
            "mysql_restart",
            &[
                ("sent_during_outage", during.to_string()),
                ("refused_during_outage", refused.to_string()),
                ("committed_but_refused", committed_but_refused.to_string()),
                ("slowest_answer_ms", ms(slowest)),
                ("resent_acked_ms", settled.map_or("none".into(), ms)),
                ("ready_ms", ready_ms),
            ],
        )
        .await;
    counts.assert_clean();
    assert!(acked_before > 0, "traffic flowed before the kill");
    assert!(
        answered,
        "a message was not answered within {ANSWER_BOUND:?}"
    );
    assert!(slowest <= ANSWER_BOUND, "slowest answer {slowest:?}");
    assert!(during > 0, "messages were sent during the outage");
    assert_eq!(
        refused, during,
        "every message sent during the outage is answered unavailable"
    );
    for (i, (status, body)) in ready_during.iter().enumerate() {
        assert_eq!(*status, 503, "node {i} ready without MySQL: {body}");
        assert_eq!(body["mysql"], false, "node {i}: {body}");
    }
    assert!(
        settled.is_some(),
        "the nodes did not take every message again within {RECOVERY_BOUND:?} of the restart"
    );
    assert_eq!(
        ready_after,
        [200, 200],
        "readiness within {RECOVERY_BOUND:?} of MySQL's restart"
    );
    assert_eq!(counts.reconnects, 0, "a MySQL outage closes no socket");
}
