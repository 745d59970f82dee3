//! Per-socket limits on what a client sends: token buckets (`rate` frames a second
//! sustained, `burst` at once), and the guard that closes a socket which keeps sending
//! past them.

use std::time::{Duration, Instant};

/// A socket that has this many frames refused within [`FLOOD_WINDOW`] is closed with 1008:
/// a client that backs off after `rate_limited` never gets near it.
pub const FLOOD_REFUSALS: u32 = 50;
pub const FLOOD_WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: f64::from(rate.max(1)),
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    pub fn take_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn take(&mut self) -> bool {
        self.take_at(Instant::now())
    }

    /// How long until a token is there; zero when one is.
    pub fn until_next_at(&self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        let tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        Duration::from_secs_f64(((1.0 - tokens) / self.rate).max(0.0))
    }

    /// Takes a token, waiting for one if need be.
    pub async fn wait_take(&mut self) {
        while !self.take() {
            tokio::time::sleep(self.until_next_at(Instant::now())).await;
        }
    }
}

/// Counts refused frames in fixed windows of [`FLOOD_WINDOW`].
#[derive(Debug)]
pub struct FloodGuard {
    window_start: Instant,
    refused: u32,
}

impl Default for FloodGuard {
    fn default() -> Self {
        Self {
            window_start: Instant::now(),
            refused: 0,
        }
    }
}

impl FloodGuard {
    /// Notes one refused frame; true when the socket is flooding.
    pub fn refused_at(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.window_start) > FLOOD_WINDOW {
            self.window_start = now;
            self.refused = 0;
        }
        self.refused += 1;
        self.refused >= FLOOD_REFUSALS
    }

    pub fn refused(&mut self) -> bool {
        self.refused_at(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 5);
        bucket.last = start;
        let passed = (0..8).filter(|_| bucket.take_at(start)).count();
        assert_eq!(passed, 5);
        assert!(!bucket.take_at(start + Duration::from_millis(50)));
        let wait = bucket.until_next_at(start + Duration::from_millis(50));
        assert!(wait > Duration::from_millis(40) && wait <= Duration::from_millis(50));
        assert!(bucket.take_at(start + Duration::from_millis(110)));
        // A long pause refills to the burst, never beyond.
        let later = start + Duration::from_secs(60);
        assert_eq!((0..10).filter(|_| bucket.take_at(later)).count(), 5);
    }

    #[test]
    fn refusals_close_the_socket_only_when_they_keep_coming() {
        let start = Instant::now();
        let mut guard = FloodGuard {
            window_start: start,
            refused: 0,
        };
        for _ in 1..FLOOD_REFUSALS {
            assert!(!guard.refused_at(start));
        }
        // A new window forgets the old refusals.
        let later = start + FLOOD_WINDOW + Duration::from_millis(1);
        assert!(!guard.refused_at(later));
        for _ in 2..FLOOD_REFUSALS {
            assert!(!guard.refused_at(later));
        }
        assert!(guard.refused_at(later));
    }
}
