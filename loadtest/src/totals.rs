//! Run-wide counters that the socket readers fill and the reports read; a module of its
//! own so that `ws` (which fills them) and `window` (which reads them) need not import
//! each other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Mutex, PoisonError};

/// Run-wide counters the reader tasks fill; printed after goose's report.
#[derive(Default)]
pub struct Totals {
    pub from_partner: AtomicU64,
    pub other_messages: AtomicU64,
    /// Partner's message: server `sentAt` to arrival here, in microseconds.
    pub delivery_us: Mutex<Vec<u64>>,
    /// `chatMessage` sent to its echo, and `chatHistory` round trips, in microseconds.
    pub ack_us: Mutex<Vec<u64>>,
    pub history_us: Mutex<Vec<u64>>,
    pub error_frames: Mutex<HashMap<String, u64>>,
    pub closed_early: AtomicU64,
    /// Sockets open right now (opened and their reader still running).
    pub open_sockets: AtomicI64,
}

pub static TOTALS: std::sync::LazyLock<Totals> = std::sync::LazyLock::new(Totals::default);

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
