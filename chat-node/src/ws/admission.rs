//! How fast a node takes new sockets: one token bucket per node, shared by every worker.
//! A reconnect storm (every client of a drained node back within a second) would
//! otherwise set up thousands of sockets at once, each reading the directory, MySQL and
//! Redis. Past the bucket an upgrade is refused before anything is set up, with 503
//! `unavailable` and a `Retry-After` that spreads the refused clients over the time the
//! bucket needs to take them all.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::rate::TokenBucket;

/// The longest `Retry-After` a refused upgrade is given.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Admission {
    rate: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    bucket: TokenBucket,
    /// Refused upgrades not yet due back; drains at the bucket's rate.
    backlog: f64,
    last: Instant,
}

impl Admission {
    /// `rate` upgrades a second sustained, `burst` at once.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate.max(1)),
            state: Mutex::new(State {
                bucket: TokenBucket::new(rate, burst),
                backlog: 0.0,
                last: Instant::now(),
            }),
        }
    }

    /// `Ok` to go on with an upgrade, or how long the client should wait (whole seconds,
    /// at least one).
    pub fn admit(&self) -> Result<(), Duration> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Result<(), Duration> {
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
        let admission = Admission::new(10, 20);
        let admitted = (0..20)
            .filter(|_| admission.admit_at(start).is_ok())
            .count();
        assert_eq!(admitted, 20, "the burst");
        // 40 more at the same instant: the 10 first are told 1 s, the next 10 2 s, …
        let waits: Vec<u64> = (0..40)
            .map(|_| admission.admit_at(start).unwrap_err().as_secs())
            .collect();
        assert_eq!(&waits[..10], &[1; 10]);
        assert_eq!(&waits[10..20], &[2; 10]);
        assert_eq!(waits[39], 4);
        // A second later the bucket has 10 tokens again.
        let later = start + Duration::from_secs(1);
        let admitted = (0..15)
            .filter(|_| admission.admit_at(later).is_ok())
            .count();
        assert_eq!(admitted, 10);
    }

    #[test]
    fn a_long_storm_is_told_at_most_the_longest_wait() {
        let start = Instant::now();
        let admission = Admission::new(1, 1);
        let last = (0..1000)
            .filter_map(|_| admission.admit_at(start).err())
            .last();
        assert_eq!(last, Some(MAX_RETRY_AFTER));
        // Once the refused are due back, the backlog is gone.
        let quiet = start + Duration::from_secs(2000);
        assert!(admission.admit_at(quiet).is_ok());
        assert_eq!(
            admission.admit_at(quiet),
            Err(Duration::from_secs(1)),
            "a lone refusal waits one second"
        );
    }
}
