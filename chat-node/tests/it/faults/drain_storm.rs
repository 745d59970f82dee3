//! A reconnect storm after a drain: a node holding a few hundred sockets gets SIGTERM,
//! closes them all with 1012 and exits; every client reconnects to the other node at
//! once (no back-off before the first attempt), `sync`s, and resends what was not
//! acknowledged. Nothing is lost, and every client is back within a bound.

use std::time::{Duration, Instant};

use super::{ms, Fleet, Spec, FAULT_ENV};
use crate::harness::Cluster;

/// Clients on the node that drains (node 1), and on the one that stays (node 0).
const ON_DRAINED: usize = 300;
const ON_SURVIVOR: usize = 20;
/// Clients of the drained node that send (to the survivor's clients).
const DRAINED_SENDERS: usize = 20;
const EVERY: Duration = Duration::from_millis(400);
const BEFORE: Duration = Duration::from_secs(3);
const AFTER: Duration = Duration::from_secs(3);
/// Every client of the drained node is reconnected and synced within this of SIGTERM: the
/// drain's own bound (CHAT_DRAIN_TIMEOUT_SECS, 20 s) and 10 s to reconnect and sync. The
/// drain closes sockets one at a time (each takes its user offline), so on a busy 2-core
/// machine with debug builds the last of 300 is back after 4 to 16 s.
const BACK_BOUND: Duration = Duration::from_secs(30);
const EXIT_BOUND: Duration = Duration::from_secs(25);
const SETTLE_BOUND: Duration = Duration::from_secs(30);

/// Clients `0..ON_DRAINED` live on node 1, the rest on node 0. Each survivor client sends
/// to its share of the drained node's clients in turn (together they cover all of them);
/// the first `DRAINED_SENDERS` drained clients send back.
fn specs() -> Vec<Spec> {
    let mut specs: Vec<Spec> = (0..ON_DRAINED)
        .map(|i| Spec {
            home: 1,
            peers: if i < DRAINED_SENDERS {
                vec![ON_DRAINED + i % ON_SURVIVOR]
            } else {
                Vec::new()
            },
        })
        .collect();
    for j in 0..ON_SURVIVOR {
        specs.push(Spec {
            home: 0,
            peers: (j..ON_DRAINED).step_by(ON_SURVIVOR).collect(),
        });
    }
    specs
}

fn percentile(sorted: &[Duration], p: usize) -> String {
    if sorted.is_empty() {
        return "none".into();
    }
    ms(sorted[(sorted.len() - 1) * p / 100])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_of_a_node_with_300_sockets_every_client_is_back_on_the_other_node_and_nothing_is_lost(
) {
    let mut c = Cluster::start_with(2, FAULT_ENV).await;
    let set_up = Instant::now();
    let mut fleet = Fleet::start(&c, &specs(), EVERY).await;
    let set_up = set_up.elapsed();
    tokio::time::sleep(BEFORE).await;

    let drained = fleet.homed_on(1);
    let acked_before = fleet.acked();
    fleet.note_rss(&c);
    let term_at = Instant::now();
    c.signal(1, "TERM");
    let back = fleet
        .wait_until(BACK_BOUND, |f| f.back_at(&drained, term_at).is_some())
        .await;
    let times = fleet.back_times(&drained, term_at);
    let exit = c.wait_exit(1, EXIT_BOUND).await;
    let exited_after = term_at.elapsed();
    tokio::time::sleep(AFTER.saturating_sub(term_at.elapsed())).await;
    fleet.note_rss(&c);
    let settled = fleet.settle(SETTLE_BOUND).await;

    let closed_1012 = fleet.clients_where(&drained, |l| l.closes.first() == Some(&Some(1012)));
    let others_reconnected = fleet.clients_where(&fleet.homed_on(0), |l| l.connects > 1);
    let counts = fleet
        .finish(
            &c,
            "drain_storm",
            &[
                ("sockets", drained.len().to_string()),
                ("closed_1012", closed_1012.to_string()),
                ("back", times.len().to_string()),
                ("back_p50_ms", percentile(&times, 50)),
                ("back_p99_ms", percentile(&times, 99)),
                ("back_max_ms", percentile(&times, 100)),
                ("exit_ms", ms(exited_after)),
                ("setup_ms", ms(set_up)),
                ("settle_ms", settled.map_or("none".into(), ms)),
            ],
        )
        .await;
    counts.assert_clean();
    assert!(acked_before > 0, "traffic flowed before SIGTERM");
    assert_eq!(
        closed_1012,
        drained.len(),
        "the drain closes every socket with 1012"
    );
    assert!(
        back,
        "{} of {} clients back within {BACK_BOUND:?} of SIGTERM",
        times.len(),
        drained.len()
    );
    let status = exit.expect("the drained node exits within the bound");
    assert!(status.success(), "clean exit: {status:?}");
    assert!(settled.is_some(), "not settled within {SETTLE_BOUND:?}");
    assert_eq!(
        others_reconnected, 0,
        "the survivor's clients kept their sockets"
    );
}
