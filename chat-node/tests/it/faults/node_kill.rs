//! A node dies (SIGKILL) under steady cross-node traffic: its clients lose their sockets
//! without a close frame, reconnect to the survivor and `sync`; what they had sent
//! without an acknowledgement is resent with the same clientId and stored once; nothing
//! acknowledged is lost.

use std::time::{Duration, Instant};

use super::{ms, ring, Fleet, FAULT_ENV};
use crate::harness::Cluster;

const CLIENTS: usize = 8;
const EVERY: Duration = Duration::from_millis(25);
const BEFORE: Duration = Duration::from_secs(2);
const AFTER: Duration = Duration::from_secs(3);
/// Every client of the killed node is reconnected and synced within this.
const BACK_BOUND: Duration = Duration::from_secs(10);
const SETTLE_BOUND: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_killed_under_traffic_clients_move_to_the_survivor_and_nothing_acked_is_lost() {
    let mut c = Cluster::start_with(2, FAULT_ENV).await;
    let homes: Vec<usize> = (0..CLIENTS).map(|i| i % 2).collect();
    let mut fleet = Fleet::start(&c, &ring(&homes), EVERY).await;
    tokio::time::sleep(BEFORE).await;

    let victims = fleet.homed_on(1);
    let acked_before = fleet.acked();
    fleet.note_rss(&c);
    let in_flight: usize = victims.iter().map(|&i| fleet.log(i).pending().len()).sum();
    let killed_at = Instant::now();
    c.kill(1);
    let back = fleet
        .wait_until(BACK_BOUND, |f| f.back_after(&victims, killed_at).is_some())
        .await;
    let back_after = fleet.back_after(&victims, killed_at);
    tokio::time::sleep(AFTER.saturating_sub(killed_at.elapsed())).await;
    let settled = fleet.settle(SETTLE_BOUND).await;

    let victim_closes: Vec<Vec<Option<u16>>> = victims
        .iter()
        .map(|&i| fleet.log(i).closes.clone())
        .collect();
    let others_reconnected = fleet.clients_where(&fleet.homed_on(0), |l| l.connects > 1);
    let counts = fleet
        .finish(
            &c,
            "node_sigkill",
            &[
                ("victims", victims.len().to_string()),
                ("in_flight_at_kill", in_flight.to_string()),
                ("back_ms", back_after.map_or("none".into(), ms)),
                ("settle_ms", settled.map_or("none".into(), ms)),
            ],
        )
        .await;
    counts.assert_clean();
    assert!(acked_before > 0, "traffic flowed before the kill");
    assert!(
        back,
        "the killed node's clients were not all reconnected and synced within {BACK_BOUND:?}"
    );
    assert!(settled.is_some(), "not settled within {SETTLE_BOUND:?}");
    for (i, closes) in victims.iter().zip(&victim_closes) {
        assert!(
            !closes.is_empty(),
            "client {i} of the killed node lost its socket"
        );
    }
    assert_eq!(
        others_reconnected, 0,
        "the survivor's clients kept their sockets"
    );
}
