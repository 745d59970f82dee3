//! One heartbeat task per node instead of a timer per socket. Every second it visits the
//! node's sockets: a twentieth of them (by id) get their ping, and any of those silent for
//! [`CLIENT_TIMEOUT`] are asked to close; every socket whose frames have waited
//! `send_timeout` with none taken is asked to close as stalled. A socket costs the node no
//! timer, and pings go out spread over the interval rather than all at once.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bus::outbox::STALLED;
use crate::bus::{Closing, ConnId, Frame, Hub, Outbox};

/// Each socket is pinged this often.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// A socket silent for this long (no pong, no frame) is closed.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the task runs; stalls are noticed to within it.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Sweeps per ping interval: each sweep pings the sockets whose id falls in its slice.
const SLICES: u64 = PING_INTERVAL.as_secs() / SWEEP_EVERY.as_secs();

pub const TIMED_OUT: Closing = Closing::new(1001, "no answer to pings");

pub async fn run_heartbeat(hub: Hub, send_timeout: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweep = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let now = Instant::now();
        hub.for_each_outbox(|id, outbox| visit(id, outbox, sweep, now, send_timeout));
        sweep = sweep.wrapping_add(1);
    }
}

/// What one sweep does to one socket.
fn visit(id: ConnId, outbox: &Outbox, sweep: u64, now: Instant, send_timeout: Duration) {
    if outbox
        .stall_deadline(send_timeout)
        .is_some_and(|d| d <= now)
    {
        outbox.request_close(STALLED);
        return;
    }
    if id % SLICES != sweep % SLICES {
        return;
    }
    if outbox.silent_for() >= CLIENT_TIMEOUT {
        outbox.request_close(TIMED_OUT);
    } else {
        outbox.push(Frame::Ping);
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll, Waker};

    use super::*;

    fn open() -> Outbox {
        let outbox = Outbox::new(1024);
        outbox.open(Frame::Ping);
        let _ = outbox.poll_take(&mut Context::from_waker(Waker::noop()));
        outbox
    }

    fn took_ping(outbox: &Outbox) -> bool {
        matches!(
            outbox.poll_take(&mut Context::from_waker(Waker::noop())),
            Poll::Ready(Some(Frame::Ping))
        )
    }

    #[tokio::test]
    async fn each_socket_is_pinged_once_per_interval_in_its_own_slice() {
        let outboxes: Vec<Outbox> = (0..SLICES * 3).map(|_| open()).collect();
        let now = Instant::now();
        let mut pings = vec![0; outboxes.len()];
        for sweep in 0..SLICES {
            for (id, outbox) in outboxes.iter().enumerate() {
                visit(id as ConnId, outbox, sweep, now, Duration::from_secs(10));
                if took_ping(outbox) {
                    pings[id] += 1;
                }
            }
            // Three sockets of sixty in each sweep: pings are spread out.
            let this_sweep = (0..outboxes.len())
                .filter(|id| *id as u64 % SLICES == sweep)
                .count();
            assert_eq!(this_sweep, 3);
        }
        assert!(pings.iter().all(|n| *n == 1), "{pings:?}");
    }

    #[tokio::test]
    async fn frames_waiting_past_the_send_timeout_close_the_socket_as_stalled() {
        let outbox = open();
        assert!(outbox.push(Frame::Ping));
        let soon = Instant::now() + Duration::from_secs(1);
        // Not this socket's slice, and not stalled yet: nothing happens.
        visit(1, &outbox, 0, soon, Duration::from_secs(10));
        let waiting = tokio::time::timeout(Duration::from_millis(10), outbox.closing()).await;
        assert!(waiting.is_err());
        let late = Instant::now() + Duration::from_secs(11);
        visit(1, &outbox, 0, late, Duration::from_secs(10));
        assert_eq!(outbox.closing().await, STALLED);
    }
}
