//! A slow consumer under steady cross-node traffic: one client asks a node for far more
//! than any buffer holds (80 `sync`s of 500 long messages, about 1 GB of replies) and
//! never reads. The node bounds what waits for that socket, closes it with 1008, and
//! stays small; the fleet's clients on both nodes keep chatting and lose nothing.

use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::Message;

use super::{ring, Fleet, FAULT_ENV};
use crate::harness::Cluster;
use crate::ws_limits::{
    memory_mib, metric, metrics, raw_ws, read_to_close, seed_long_messages, SYNC_ALL,
};
use futures_util::SinkExt;

const CLIENTS: usize = 8;
const EVERY: Duration = Duration::from_millis(50);
const BEFORE: Duration = Duration::from_secs(2);
const AFTER: Duration = Duration::from_secs(2);
/// The slow socket is closed within this of its last request.
const CLOSE_BOUND: Duration = Duration::from_secs(60);
const SETTLE_BOUND: Duration = Duration::from_secs(20);
/// Far below the ~1 GB the requests would take without a bound (debug build).
const NODE_MEMORY_BOUND_MIB: u64 = 150;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_with_1008_the_node_stays_small_and_the_fleet_loses_nothing() {
    let mut env = FAULT_ENV.to_vec();
    env.extend([
        ("CHAT_WS_HISTORY_RATE", "1000"),
        ("CHAT_WS_HISTORY_BURST", "1000"),
    ]);
    let c = Cluster::start_with(2, &env).await;
    let alice = c.login_new(0, "slow").await;
    let bob = c.login_new(0, "seeded").await;
    seed_long_messages(&c, &alice, &bob).await;
    let homes: Vec<usize> = (0..CLIENTS).map(|i| i % 2).collect();
    let mut fleet = Fleet::start(&c, &ring(&homes), EVERY).await;
    tokio::time::sleep(BEFORE).await;
    let acked_before = fleet.acked();

    let mut slow = raw_ws(&alice, &c.url(0), Some(4096)).await;
    for _ in 0..80 {
        if slow.send(Message::text(SYNC_ALL)).await.is_err() {
            break;
        }
    }
    let asked_at = Instant::now();
    let pid = c.nodes[0].pid();
    let mut peak_mib = 0;
    let mut closed_after = None;
    while asked_at.elapsed() < CLOSE_BOUND {
        peak_mib = peak_mib.max(memory_mib(pid).1);
        if forced_closes(&c).await >= 1.0 {
            closed_after = Some(asked_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let acked_while_slow = fleet.acked() - acked_before;
    tokio::time::sleep(AFTER).await;
    fleet.note_rss(&c);
    let settled = fleet.settle(SETTLE_BOUND).await;
    let reconnects = fleet.clients_where(&fleet.clients(), |l| l.connects > 1);
    let counts = fleet
        .finish(
            &c,
            "slow_consumer",
            &[
                ("closed_ms", closed_after.map_or("none".into(), super::ms)),
                ("acked_while_slow", acked_while_slow.to_string()),
                ("slow_node_peak_mib", peak_mib.to_string()),
            ],
        )
        .await;
    counts.assert_clean();
    assert!(acked_before > 0, "traffic flowed before the slow consumer");
    assert!(
        closed_after.is_some(),
        "the slow socket was not closed within {CLOSE_BOUND:?}"
    );
    assert!(
        peak_mib < NODE_MEMORY_BOUND_MIB,
        "the slow consumer's node grew to {peak_mib} MiB"
    );
    assert!(acked_while_slow > 0, "the fleet kept chatting meanwhile");
    assert_eq!(reconnects, 0, "no fleet client lost its socket");
    assert!(settled.is_some(), "not settled within {SETTLE_BOUND:?}");
    // Once it reads again it finds what was already on its way, then the close.
    let (_, code) = read_to_close(&mut slow, Duration::from_secs(30)).await;
    assert_eq!(code, Some(1008));
}

async fn forced_closes(c: &Cluster) -> f64 {
    metric(
        &metrics(c).await,
        r#"chat_ws_forced_closes_total{reason="slow_reader"}"#,
    )
}
