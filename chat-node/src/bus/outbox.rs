//! What waits to be written to one socket, bounded in bytes. The hub and the socket task
//! push frames; the socket's response body takes them as fast as the client reads. A
//! count of frames would not bound memory (one `sync` reply can be hundreds of KiB), so
//! the bound is on bytes, replies to the socket's own requests included: a push past it
//! is refused and the socket is asked to close with 1008. The client reconnects and syncs.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytestring::ByteString;
use tokio::sync::Notify;
use tokio::time::Instant;

/// One frame to write, in order with every other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(ByteString),
    Ping,
    Pong(Vec<u8>),
    /// The last frame: the body ends after it.
    Close(Option<Closing>),
}

impl Frame {
    /// Payload bytes, which is what the bound counts.
    fn len(&self) -> usize {
        match self {
            Self::Text(text) => text.len(),
            Self::Pong(payload) => payload.len(),
            Self::Ping | Self::Close(_) => 0,
        }
    }
}

/// A close code and its reason, as a socket is asked to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closing {
    pub code: u16,
    pub reason: &'static str,
}

impl Closing {
    pub const fn new(code: u16, reason: &'static str) -> Self {
        Self { code, reason }
    }
}

/// Why a socket that fell behind is closed; docs/protocol.md names both.
pub const TOO_SLOW: Closing =
    Closing::new(1008, "too much waits for this socket; reconnect and sync");
pub const STALLED: Closing = Closing::new(1008, "this socket stopped reading; reconnect and sync");

#[derive(Default)]
struct Queue {
    /// Until the socket's first frame is queued, the body takes nothing: deliveries that
    /// arrive while the socket is set up wait behind it.
    open: bool,
    frames: VecDeque<Frame>,
    bytes: usize,
    /// Set once the socket task must close the socket; the first reason wins.
    close: Option<Closing>,
    /// A `Close` frame is queued: nothing more is accepted.
    ended: bool,
    /// Since when frames have waited without the body taking one.
    waiting_since: Option<Instant>,
    pushed: u64,
    reader: Option<Waker>,
}

/// Both ends of one socket's queue; cheap to clone.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    limit: usize,
    /// Wakes the socket task when `close` is set.
    closing: Notify,
}

impl Outbox {
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                limit,
                closing: Notify::new(),
            }),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Every step under this lock leaves the queue consistent, so a poisoned one is fine.
        self.inner
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a frame; false when it was refused: the socket is closing, or the frame would
    /// pass the bound, in which case the socket task is asked to close with [`TOO_SLOW`].
    pub fn push(&self, frame: Frame) -> bool {
        let mut q = self.queue();
        if q.ended || q.close == Some(TOO_SLOW) {
            return false;
        }
        let len = frame.len();
        if q.bytes + len > self.inner.limit {
            q.close.get_or_insert(TOO_SLOW);
            drop(q);
            self.inner.closing.notify_one();
            return false;
        }
        q.bytes += len;
        q.frames.push_back(frame);
        q.pushed += 1;
        q.waiting_since.get_or_insert_with(Instant::now);
        let reader = q.reader.take();
        drop(q);
        if let Some(reader) = reader {
            reader.wake();
        }
        true
    }

    /// Puts the socket's first frame before anything queued so far and lets the body take.
    pub fn open(&self, first: Frame) {
        let mut q = self.queue();
        q.bytes += first.len();
        q.frames.push_front(first);
        q.open = true;
        // What waited during set-up had no chance to be taken yet.
        q.waiting_since = Some(Instant::now());
        let reader = q.reader.take();
        drop(q);
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    /// Asks the socket task to close the socket (a logout, a lost subscription).
    pub fn request_close(&self, closing: Closing) {
        self.queue().close.get_or_insert(closing);
        self.inner.closing.notify_one();
    }

    /// Resolves once the socket must close, with why.
    pub async fn closing(&self) -> Closing {
        loop {
            if let Some(closing) = self.queue().close {
                return closing;
            }
            self.inner.closing.notified().await;
        }
    }

    /// When the frames waiting now count as stalled, if any wait.
    pub fn stall_deadline(&self, after: Duration) -> Option<Instant> {
        self.queue().waiting_since.map(|since| since + after)
    }

    /// Frames pushed so far, to tell when deliveries stop arriving.
    pub fn pushed(&self) -> u64 {
        self.queue().pushed
    }

    /// Queues the close frame after what waits, which the client still receives.
    pub fn close(&self, closing: Option<Closing>) {
        self.end(closing, false);
    }

    /// Queues the close frame in place of what waits: for a client that does not read.
    pub fn abandon(&self, closing: Closing) {
        self.end(Some(closing), true);
    }

    fn end(&self, closing: Option<Closing>, discard: bool) {
        let mut q = self.queue();
        if q.ended {
            return;
        }
        if discard {
            q.frames.clear();
            q.bytes = 0;
        }
        q.frames.push_back(Frame::Close(closing));
        q.ended = true;
        q.open = true;
        let reader = q.reader.take();
        drop(q);
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    /// The body's end: the next frame, or `None` after the close frame.
    pub fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Option<Frame>> {
        let mut q = self.queue();
        if !q.open {
            q.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        match q.frames.pop_front() {
            Some(frame) => {
                q.bytes -= frame.len();
                q.waiting_since = (!q.frames.is_empty()).then(Instant::now);
                Poll::Ready(Some(frame))
            }
            None if q.ended => Poll::Ready(None),
            None => {
                q.reader = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use super::*;

    fn text(n: usize) -> Frame {
        Frame::Text(ByteString::from("x".repeat(n)))
    }

    async fn take(outbox: &Outbox) -> Option<Frame> {
        poll_fn(|cx| outbox.poll_take(cx)).await
    }

    #[tokio::test]
    async fn the_first_frame_goes_out_before_what_arrived_during_set_up() {
        let outbox = Outbox::new(100);
        assert!(outbox.push(text(2)));
        let waker = std::task::Waker::noop();
        let pending = outbox.poll_take(&mut Context::from_waker(waker));
        assert!(
            pending.is_pending(),
            "nothing goes out before the first frame"
        );
        outbox.open(text(1));
        assert_eq!(take(&outbox).await, Some(text(1)));
        assert_eq!(take(&outbox).await, Some(text(2)));
    }

    #[tokio::test]
    async fn the_bound_counts_bytes_and_taking_frees_them() {
        let outbox = Outbox::new(100);
        outbox.open(text(0));
        assert_eq!(take(&outbox).await, Some(text(0)));
        assert!(outbox.push(text(60)));
        assert!(outbox.push(text(40)));
        assert_eq!(take(&outbox).await, Some(text(60)));
        assert!(outbox.push(text(60)), "taken bytes no longer count");
        assert!(outbox.stall_deadline(Duration::ZERO).is_some());
        assert!(!outbox.push(text(1)), "one byte past the bound");
        assert_eq!(outbox.closing().await, TOO_SLOW);
        assert!(!outbox.push(text(0)), "nothing more once too slow");
    }

    #[tokio::test]
    async fn abandoning_drops_what_waits_and_ends_after_the_close_frame() {
        let outbox = Outbox::new(100);
        assert!(outbox.push(text(10)));
        outbox.abandon(STALLED);
        outbox.close(None);
        assert_eq!(take(&outbox).await, Some(Frame::Close(Some(STALLED))));
        assert_eq!(take(&outbox).await, None);
        assert!(!outbox.push(Frame::Ping));
    }

    #[tokio::test]
    async fn a_close_request_reaches_the_socket_task_once_it_waits() {
        let outbox = Outbox::new(100);
        let waiter = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.closing().await }
        });
        tokio::task::yield_now().await;
        let logout = Closing::new(1008, "logged out");
        outbox.open(text(0));
        assert_eq!(take(&outbox).await, Some(text(0)));
        outbox.request_close(logout);
        outbox.request_close(Closing::new(1012, "later"));
        assert_eq!(waiter.await.ok(), Some(logout));
        assert!(outbox.push(text(1)), "what waits is still delivered");
        assert!(outbox.stall_deadline(Duration::ZERO).is_some());
        assert_eq!(take(&outbox).await, Some(text(1)));
        assert_eq!(outbox.stall_deadline(Duration::ZERO), None);
    }
}
