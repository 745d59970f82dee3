//! How fast a node takes new sockets: one token bucket per node, shared by every worker,
//! and a bound on the sockets being set up at once. A reconnect storm (every client of a
//! drained node back within a second) would otherwise set up thousands of sockets at
//! once, each reading the directory, MySQL and Redis. Past the bucket, or past the set-ups
//! allowed at once and a bounded queue of upgrades waiting for one, an upgrade is refused
//! before anything is set up, with 503 `unavailable` and a `Retry-After`.
//!
//! The rate alone does not fit every machine: a node that takes longer per set-up than
//! the rate allows piles set-ups up until their MySQL and Redis calls time out, and each
//! socket that fails after its presence went online publishes it offline again. The
//! bound on set-ups in flight follows what the node really manages, and the queue in
//! front of it keeps the node at that pace without sending clients into backoff while
//! it has room.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::rate::TokenBucket;

/// The longest `Retry-After` a refused upgrade is given.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// How long a queued upgrade waits for a set-up before it is refused.
const QUEUE_WAIT: Duration = Duration::from_secs(5);
/// When an upgrade refused for want of a set-up should come back.
const BUSY_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Admission {
    rate: f64,
    state: Mutex<State>,
    /// One permit per socket that may be set up at once.
    set_ups: Arc<Semaphore>,
    /// Upgrades waiting for a permit, and how many may.
    queued: AtomicUsize,
    max_queued: usize,
}

/// A socket being set up; dropped once its first frames are queued (or it failed).
#[derive(Debug)]
pub struct SetUp {
    _permit: OwnedSemaphorePermit,
}

/// A place in the queue, given back however the wait ends: a client that hangs up drops
/// the upgrade mid-wait.
struct InQueue<'a>(&'a AtomicUsize);

impl Drop for InQueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why an upgrade was refused, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Over the sustained rate and the burst.
    Rate(Duration),
    /// As many sockets as allowed are being set up, and as many upgrades wait.
    Busy,
}

impl Refused {
    pub fn retry_after(self) -> Duration {
        match self {
            Self::Rate(d) => d,
            Self::Busy => BUSY_RETRY,
        }
    }
}

#[derive(Debug)]
struct State {
    bucket: TokenBucket,
    /// Refused upgrades not yet due back; drains at the bucket's rate.
    backlog: f64,
    last: Instant,
}

impl Admission {
    /// `rate` upgrades a second sustained, `burst` at once; at most `in_flight` being set
    /// up at any moment, and `queue` more waiting for that.
    pub fn new(rate: u32, burst: u32, in_flight: usize, queue: usize) -> Self {
        Self {
            rate: f64::from(rate.max(1)),
            state: Mutex::new(State {
                bucket: TokenBucket::new(rate, burst),
                backlog: 0.0,
                last: Instant::now(),
            }),
            set_ups: Arc::new(Semaphore::new(in_flight.max(1))),
            queued: AtomicUsize::new(0),
            max_queued: queue,
        }
    }

    /// A set-up to hold until the socket is set up, or why not and how long the client
    /// should wait (whole seconds, at least one).
    pub async fn admit(&self) -> Result<SetUp, Refused> {
        self.take_token(Instant::now()).map_err(Refused::Rate)?;
        if let Ok(permit) = self.set_ups.clone().try_acquire_owned() {
            return Ok(SetUp { _permit: permit });
        }
        let ahead = self.queued.fetch_add(1, Ordering::AcqRel);
        let in_queue = InQueue(&self.queued);
        if ahead >= self.max_queued {
            return Err(Refused::Busy);
        }
        let permit = tokio::time::timeout(QUEUE_WAIT, self.set_ups.clone().acquire_owned()).await;
        drop(in_queue);
        match permit {
            Ok(Ok(permit)) => Ok(SetUp { _permit: permit }),
            _ => Err(Refused::Busy),
        }
    }

    fn take_token(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(state.last).as_secs_f64();
        state.last = now;
        state.backlog = (state.backlog - elapsed * self.rate).max(0.0);
        if state.bucket.take_at(now) {
            return Ok(());
        }
        // The n-th client refused in a burst comes back when the bucket has had time for
        // the n before it, rather than all of them a second later.
        state.backlog += 1.0;
        let secs = (state.backlog / self.rate).ceil().max(1.0);
        Err(Duration::from_secs_f64(secs).min(MAX_RETRY_AFTER))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_admitted_then_the_rate_and_the_rest_are_spread_out() {
        let start = Instant::now();
        let admission = Admission::new(10, 20, 1, 0);
        let admitted = (0..20)
            .filter(|_| admission.take_token(start).is_ok())
            .count();
        assert_eq!(admitted, 20, "the burst");
        // 40 more at the same instant: the 10 first are told 1 s, the next 10 2 s, …
        let waits: Vec<u64> = (0..40)
            .map(|_| admission.take_token(start).unwrap_err().as_secs())
            .collect();
        assert_eq!(&waits[..10], &[1; 10]);
        assert_eq!(&waits[10..20], &[2; 10]);
        assert_eq!(waits[39], 4);
        // A second later the bucket has 10 tokens again.
        let later = start + Duration::from_secs(1);
        let admitted = (0..15)
            .filter(|_| admission.take_token(later).is_ok())
            .count();
        assert_eq!(admitted, 10);
    }

    #[tokio::test]
    async fn set_ups_beyond_the_bound_wait_in_a_bounded_queue() {
        let admission = Arc::new(Admission::new(1000, 1000, 1, 1));
        let first = admission.admit().await.unwrap();
        let waiting = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.admit().await })
        };
        while admission.queued.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        let refused = admission.admit().await.unwrap_err();
        assert_eq!(refused, Refused::Busy, "the queue is full");
        assert_eq!(refused.retry_after(), Duration::from_secs(1));
        assert!(!waiting.is_finished());
        drop(first);
        let second = waiting
            .await
            .unwrap()
            .expect("the queued upgrade goes next");
        assert_eq!(admission.queued.load(Ordering::Acquire), 0);
        drop(second);
        assert!(
            admission.admit().await.is_ok(),
            "both set-ups were given back"
        );
    }

    #[tokio::test]
    async fn an_upgrade_dropped_while_it_waits_gives_its_place_back() {
        let admission = Admission::new(1000, 1000, 1, 1);
        let _held = admission.admit().await.unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(20), admission.admit()).await;
        assert!(waited.is_err(), "it was still waiting when dropped");
        assert_eq!(admission.queued.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn a_refusal_by_rate_takes_no_set_up() {
        let admission = Admission::new(1, 1, 1, 0);
        drop(admission.admit().await.unwrap());
        assert!(matches!(admission.admit().await, Err(Refused::Rate(_))));
        assert_eq!(admission.set_ups.available_permits(), 1);
    }
}
