//! The measured window of an A/B run (`loadtest/ab.sh`).
//!
//! `LOADTEST_WINDOW=<start>-<end>` names it in Unix milliseconds, so the script that
//! samples CPU at those instants and the load generator agree on it by the wall clock.
//! Acknowledgements that complete inside it are kept apart from the whole-run figures,
//! and after the run one `window:` line sums them up for the script to parse.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::plan;
use crate::totals::{lock, TOTALS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ms: u64,
    pub end_ms: u64,
}

impl Window {
    fn contains(self, ms: u64) -> bool {
        (self.start_ms..self.end_ms).contains(&ms)
    }
}

static WINDOW: OnceLock<Window> = OnceLock::new();

/// What happened inside the window.
struct Counts {
    ack_us: Mutex<Vec<u64>>,
    failed: AtomicU64,
    from_partner: AtomicU64,
    connects: AtomicU64,
    missed_slots: AtomicU64,
    /// Open sockets when the window opened and closed; -1 until then.
    open_at_start: AtomicI64,
    open_at_end: AtomicI64,
}

static COUNTS: Counts = Counts {
    ack_us: Mutex::new(Vec::new()),
    failed: AtomicU64::new(0),
    from_partner: AtomicU64::new(0),
    connects: AtomicU64::new(0),
    missed_slots: AtomicU64::new(0),
    open_at_start: AtomicI64::new(-1),
    open_at_end: AtomicI64::new(-1),
};

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `<start>-<end>`, Unix milliseconds, start before end.
pub fn parse(range: &str) -> Result<Window, String> {
    let bad = || format!("LOADTEST_WINDOW is <start>-<end> in Unix ms, start < end: {range:?}");
    let (start, end) = range.split_once('-').ok_or_else(bad)?;
    let start_ms: u64 = start.trim().parse().map_err(|_| bad())?;
    let end_ms: u64 = end.trim().parse().map_err(|_| bad())?;
    if start_ms >= end_ms {
        return Err(bad());
    }
    Ok(Window { start_ms, end_ms })
}

/// Sets the window and starts the task that notes the open sockets at both ends.
pub fn start(window: Window) -> Result<(), String> {
    WINDOW
        .set(window)
        .map_err(|_| "window set twice".to_owned())?;
    tokio::spawn(async move {
        for (at, slot) in [
            (window.start_ms, &COUNTS.open_at_start),
            (window.end_ms, &COUNTS.open_at_end),
        ] {
            let wait = at.saturating_sub(now_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await;
            slot.store(
                TOTALS.open_sockets.load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
        }
    });
    Ok(())
}

fn inside() -> bool {
    WINDOW.get().is_some_and(|w| w.contains(now_ms()))
}

pub fn ack(took_us: u64) {
    if inside() {
        lock(&COUNTS.ack_us).push(took_us);
    }
}

pub fn ack_failed() {
    if inside() {
        COUNTS.failed.fetch_add(1, Ordering::Relaxed);
    }
}

pub fn from_partner() {
    if inside() {
        COUNTS.from_partner.fetch_add(1, Ordering::Relaxed);
    }
}

pub fn connected() {
    if inside() {
        COUNTS.connects.fetch_add(1, Ordering::Relaxed);
    }
}

pub fn missed_slots(n: u64) {
    if n > 0 && inside() {
        COUNTS.missed_slots.fetch_add(n, Ordering::Relaxed);
    }
}

/// One line of `key value` pairs, or `None` without a window.
pub fn report() -> Option<String> {
    let w = WINDOW.get()?;
    let mut v = std::mem::take(&mut *lock(&COUNTS.ack_us));
    v.sort_unstable();
    let secs = (w.end_ms - w.start_ms) as f64 / 1000.0;
    let ms = |p: f64| {
        plan::percentile(&v, p)
            .map_or_else(|| "-".into(), |us| format!("{:.2}", us as f64 / 1000.0))
    };
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let load_i = |a: &AtomicI64| a.load(Ordering::Relaxed);
    Some(format!(
        "window: secs {secs:.3} acks {} acks_per_s {:.1} p50_ms {} p95_ms {} p99_ms {} \
         max_ms {} failed {} from_partner {} connects {} missed_slots {} \
         open_at_start {} open_at_end {}",
        v.len(),
        v.len() as f64 / secs,
        ms(50.0),
        ms(95.0),
        ms(99.0),
        ms(100.0),
        load(&COUNTS.failed),
        load(&COUNTS.from_partner),
        load(&COUNTS.connects),
        load(&COUNTS.missed_slots),
        load_i(&COUNTS.open_at_start),
        load_i(&COUNTS.open_at_end),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_and_hold_their_start_but_not_their_end() {
        let w = parse("1000-2000").expect("a window");
        assert_eq!(
            w,
            Window {
                start_ms: 1000,
                end_ms: 2000
            }
        );
        assert!(w.contains(1000));
        assert!(w.contains(1999));
        assert!(!w.contains(2000));
        assert!(!w.contains(999));
        for bad in ["2000-1000", "5-5", "1000", "a-b", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
