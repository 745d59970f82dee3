//! What waits to be written to one socket, bounded in bytes. The hub and the socket task
//! push frames; the socket's response body takes them as fast as the client reads. A
//! count of frames would not bound memory (one `sync` reply can be hundreds of KiB), so
//! the bound is on bytes, replies to the socket's own requests included: a push past it
//! is refused and the socket is asked to close with 1008. The client reconnects and syncs.
//!
//! An idle socket's queue holds no allocation: it is made on the first push and given
//! back once drained. The outbox also notes when the client was last heard
//! from, so one heartbeat task per node can ping and time out every socket.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
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

/// What became of a frame given to [`Outbox::push_later`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Refused,
    Queued,
    /// Queued, and the writer must be nudged: nothing else will wake it for this frame.
    NeedsNudge,
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

/// Seconds since the process started, as the heartbeat compares them.
fn clock_secs() -> u32 {
    static START: LazyLock<std::time::Instant> = LazyLock::new(std::time::Instant::now);
    u32::try_from(START.elapsed().as_secs()).unwrap_or(u32::MAX)
}

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
    /// Frames were queued without waking the writer, and no nudge came yet.
    nudge_pending: bool,
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
    /// When the client last sent a frame, in [`clock_secs`].
    heard: AtomicU32,
}

impl Outbox {
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                limit,
                closing: Notify::new(),
                heard: AtomicU32::new(clock_secs()),
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

    /// Queues a frame; false when it was refused: the socket was asked to close, or the frame
    /// would pass the bound, in which case the socket task is asked to close with [`TOO_SLOW`].
    pub fn push(&self, frame: Frame) -> bool {
        match self.enqueue(frame, true) {
            Pushed::Refused => false,
            Pushed::Queued | Pushed::NeedsNudge => true,
        }
    }

    /// Like [`Self::push`], without waking the writer: for frames that may wait a moment
    /// (presence), so that a burst of them goes out in one write rather than one each.
    /// The caller wakes it later with [`Self::nudge`] when told to.
    pub fn push_later(&self, frame: Frame) -> Pushed {
        self.enqueue(frame, false)
    }

    /// Wakes the writer for what [`Self::push_later`] queued.
    pub fn nudge(&self) {
        let mut q = self.queue();
        q.nudge_pending = false;
        let reader = q.reader.take();
        drop(q);
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    fn enqueue(&self, frame: Frame, wake: bool) -> Pushed {
        let mut q = self.queue();
        if q.ended || q.close.is_some() {
            return Pushed::Refused;
        }
        let len = frame.len();
        if q.bytes + len > self.inner.limit {
            q.close.get_or_insert(TOO_SLOW);
            drop(q);
            self.inner.closing.notify_one();
            return Pushed::Refused;
        }
        q.bytes += len;
        q.frames.push_back(frame);
        q.pushed += 1;
        q.waiting_since.get_or_insert_with(Instant::now);
        if !wake {
            let first = !q.nudge_pending;
            q.nudge_pending = true;
            return if first {
                Pushed::NeedsNudge
            } else {
                Pushed::Queued
            };
        }
        let reader = q.reader.take();
        drop(q);
        if let Some(reader) = reader {
            reader.wake();
        }
        Pushed::Queued
    }

    /// Puts the socket's first frame before anything queued so far and lets the body take.
    pub fn open(&self, first: Frame) {
        self.open_with(vec![first]);
    }

    /// Like [`Self::open`] with several first frames, in order (`updateUsers`, then
    /// `rooms`): nothing delivered meanwhile comes between them.
    pub fn open_with(&self, firsts: Vec<Frame>) {
        let mut q = self.queue();
        for first in firsts.into_iter().rev() {
            q.bytes += first.len();
            q.frames.push_front(first);
        }
        q.open = true;
        // What waited during set-up had no chance to be taken yet.
        q.waiting_since = Some(Instant::now());
        let reader = q.reader.take();
        drop(q);
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    /// Asks the socket task to close the socket (a logout, a lost subscription). What was
    /// queued before still goes out; nothing queued after does, so a client whose node may
    /// have missed a delivery never receives a later id that would move its `sync` cursor
    /// past the missed one.
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
    /// Never while the socket is set up: nothing can be taken before its first frame.
    pub fn stall_deadline(&self, after: Duration) -> Option<Instant> {
        let q = self.queue();
        q.waiting_since
            .filter(|_| q.open)
            .map(|since| since + after)
    }

    /// The client sent a frame (a pong included): it is alive.
    pub fn heard(&self) {
        self.inner.heard.store(clock_secs(), Ordering::Relaxed);
    }

    /// How long the client has sent nothing, to the second.
    pub fn silent_for(&self) -> Duration {
        let heard = self.inner.heard.load(Ordering::Relaxed);
        Duration::from_secs(u64::from(clock_secs().saturating_sub(heard)))
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
                if q.frames.is_empty() {
                    // An idle socket keeps no room for frames; a burst's goes with it.
                    q.frames = VecDeque::new();
                }
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

    /// What an idle socket's outbox holds (no frame allocation); docs/benchmarks.md
    /// quotes it.
    #[test]
    fn an_idle_outbox_is_one_small_allocation() {
        let shared = std::mem::size_of::<Shared>();
        println!("outbox per socket: {shared} bytes");
        assert!(shared <= 256, "Shared: {shared} bytes");
    }

    #[tokio::test]
    async fn a_queue_allocates_when_used_and_gives_it_back_when_drained() {
        let outbox = Outbox::new(1 << 20);
        assert_eq!(outbox.queue().frames.capacity(), 0, "nothing until a push");
        outbox.open(text(1));
        for _ in 0..100 {
            assert!(outbox.push(text(1)));
        }
        assert!(outbox.queue().frames.capacity() >= 101);
        while take_now(&outbox).is_some() {}
        assert_eq!(
            outbox.queue().frames.capacity(),
            0,
            "the burst's room is given back"
        );
    }

    fn take_now(outbox: &Outbox) -> Option<Frame> {
        match outbox.poll_take(&mut Context::from_waker(std::task::Waker::noop())) {
            Poll::Ready(frame) => frame,
            Poll::Pending => None,
        }
    }

    #[tokio::test]
    async fn frames_pushed_for_later_wait_for_one_nudge() {
        let outbox = Outbox::new(100);
        outbox.open(text(0));
        assert_eq!(take(&outbox).await, Some(text(0)));
        let woken = std::sync::Arc::new(Flag::default());
        let waker = std::task::Waker::from(woken.clone());
        assert!(outbox
            .poll_take(&mut Context::from_waker(&waker))
            .is_pending());
        assert_eq!(outbox.push_later(text(1)), Pushed::NeedsNudge);
        assert_eq!(
            outbox.push_later(text(2)),
            Pushed::Queued,
            "one nudge is enough"
        );
        assert!(!woken.0.load(Ordering::SeqCst), "the writer sleeps on");
        outbox.nudge();
        assert!(woken.0.load(Ordering::SeqCst));
        assert_eq!(take(&outbox).await, Some(text(1)));
        assert_eq!(take(&outbox).await, Some(text(2)));
        assert_eq!(
            outbox.push_later(text(3)),
            Pushed::NeedsNudge,
            "a new burst"
        );
    }

    #[derive(Default)]
    struct Flag(std::sync::atomic::AtomicBool);

    impl std::task::Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
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
        assert!(outbox.push(text(1)));
        outbox.request_close(logout);
        outbox.request_close(Closing::new(1012, "later"));
        assert_eq!(waiter.await.ok(), Some(logout));
        assert!(
            !outbox.push(text(2)),
            "nothing queued after the request goes out"
        );
        assert_eq!(take(&outbox).await, Some(text(0)));
        assert!(outbox.stall_deadline(Duration::ZERO).is_some());
        assert_eq!(
            take(&outbox).await,
            Some(text(1)),
            "what waited still goes out"
        );
        assert_eq!(outbox.stall_deadline(Duration::ZERO), None);
    }
}
