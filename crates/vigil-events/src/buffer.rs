//! The bounded, lock-free buffer and the [`Emitter`] that fills it.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam_queue::ArrayQueue;

use crate::coarse;
use crate::config::{Config, ConfigError, MAX_BUFFER_BYTES, OverflowPolicy};
use crate::engine::Shared;
use crate::ledger::{DropReason, Ledger, LedgerSnapshot};
use crate::local::next_seq;

/// One queued event with its sequence number and emit time.
#[derive(Debug)]
pub(crate) struct Entry<E> {
    pub(crate) seq: u64,
    pub(crate) ts_ms: u64,
    pub(crate) event: E,
}

type Waker = Box<dyn Fn() + Send + Sync>;

/// The queue between emitters and the batcher.
pub(crate) struct Buffer<E> {
    queue: ArrayQueue<Entry<E>>,
    policy: OverflowPolicy,
    closed: AtomicBool,
    max_buffered_bytes: Option<usize>,
    /// With `max_buffered_bytes`: how many events fit the byte bound.
    byte_cap: AtomicUsize,
    max_batch_events: usize,
    max_batch_bytes: usize,
    /// Queue length at which emitters wake the batcher.
    nudge_at: AtomicUsize,
    /// Emitters check the queue length when `seq & mask == 0`.
    nudge_check_mask: u64,
    /// Set when a wake-up is outstanding; cleared by the batcher.
    nudged: AtomicBool,
    waker: OnceLock<Waker>,
    /// Average encoded record size seen by the batcher (bytes).
    avg_record: AtomicUsize,
    /// Events the batcher has taken out with [`Buffer::pop`]. With the queue's
    /// length and the emitters' drops it gives `accepted`, so `emit` itself
    /// bumps no shared counter.
    taken: AtomicU64,
}

impl<E> fmt::Debug for Buffer<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buffer")
            .field("len", &self.queue.len())
            .field("capacity", &self.queue.capacity())
            .field("policy", &self.policy)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl<E> Buffer<E> {
    /// The bytes one slot of the queue takes: the entry and the slot's stamp.
    pub(crate) fn slot_bytes() -> usize {
        std::mem::size_of::<(usize, Entry<E>)>()
    }

    /// Refuses a capacity whose slots would take more than
    /// [`MAX_BUFFER_BYTES`] (the queue is allocated up front).
    pub(crate) fn check_size(config: &Config) -> Result<(), ConfigError> {
        let slot_bytes = Self::slot_bytes();
        match config.capacity.checked_mul(slot_bytes) {
            Some(bytes) if bytes <= MAX_BUFFER_BYTES => Ok(()),
            _ => {
                Err(ConfigError::BufferTooLarge { capacity: config.capacity, slot_bytes, max_bytes: MAX_BUFFER_BYTES })
            }
        }
    }

    /// Builds the buffer. `config` must have passed [`Buffer::check_size`].
    pub(crate) fn new(config: &Config) -> Buffer<E> {
        coarse::start();
        let buffer = Buffer {
            queue: ArrayQueue::new(config.capacity),
            taken: AtomicU64::new(0),
            policy: config.overflow,
            closed: AtomicBool::new(false),
            max_buffered_bytes: config.max_buffered_bytes,
            byte_cap: AtomicUsize::new(config.capacity),
            max_batch_events: config.max_batch_events,
            max_batch_bytes: config.max_batch_bytes,
            nudge_at: AtomicUsize::new(config.max_batch_events),
            // Check every 8th event per thread for big batches, every one for
            // batches under 32.
            nudge_check_mask: ((config.max_batch_events / 32).clamp(1, 8).next_power_of_two() - 1) as u64,
            nudged: AtomicBool::new(false),
            waker: OnceLock::new(),
            avg_record: AtomicUsize::new(config.initial_record_estimate),
        };
        buffer.update_limits(config.initial_record_estimate);
        buffer
    }

    /// Pushes one event. Never blocks, never panics, takes no lock.
    #[inline]
    pub(crate) fn push(&self, event: E, ledger: &Ledger) -> Result<(), Dropped<E>> {
        // `accepted` is not counted here: the ledger derives it (see `taken`).
        if self.closed.load(Ordering::Relaxed) {
            ledger.emitter_drop(DropReason::Shutdown);
            return Err(Dropped::Closed(event));
        }
        let seq = next_seq();
        let entry = Entry { seq, ts_ms: coarse::now_ms(), event };
        let over_bytes = self.max_buffered_bytes.is_some() && self.queue.len() >= self.byte_cap.load(Ordering::Relaxed);
        match self.policy {
            OverflowPolicy::DropNewest => {
                if over_bytes {
                    ledger.emitter_drop(DropReason::QueueFull);
                    return Err(Dropped::Full(entry.event));
                }
                if let Err(entry) = self.queue.push(entry) {
                    ledger.emitter_drop(DropReason::QueueFull);
                    return Err(Dropped::Full(entry.event));
                }
            }
            OverflowPolicy::DropOldest => {
                if over_bytes && self.queue.pop().is_some() {
                    ledger.emitter_drop(DropReason::OldestEvicted);
                }
                if self.queue.force_push(entry).is_some() {
                    ledger.emitter_drop(DropReason::OldestEvicted);
                }
            }
        }
        if seq & self.nudge_check_mask == 0 {
            self.maybe_nudge();
        }
        Ok(())
    }

    #[inline]
    fn maybe_nudge(&self) {
        if !self.nudged.load(Ordering::Relaxed)
            && self.queue.len() >= self.nudge_at.load(Ordering::Relaxed)
            && !self.nudged.swap(true, Ordering::AcqRel)
            && let Some(wake) = self.waker.get()
        {
            wake();
        }
    }

    pub(crate) fn pop(&self) -> Option<Entry<E>> {
        let entry = self.queue.pop()?;
        self.taken.fetch_add(1, Ordering::Relaxed);
        Some(entry)
    }

    /// Events taken out by [`Buffer::pop`] so far.
    pub(crate) fn taken(&self) -> u64 {
        self.taken.load(Ordering::Relaxed)
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Installs the function emitters call to wake the batcher. Only the
    /// first call has an effect.
    pub(crate) fn set_waker(&self, waker: Waker) {
        let _ = self.waker.set(waker);
    }

    /// Re-arms the wake-up; the batcher calls this before it drains.
    pub(crate) fn rearm(&self) {
        self.nudged.store(false, Ordering::Release);
    }

    /// Whether the queue holds at least a batch's worth (by count or by
    /// estimated bytes).
    pub(crate) fn holds_full_batch(&self) -> bool {
        self.queue.len() >= self.nudge_at.load(Ordering::Relaxed)
    }

    /// The average encoded record size so far.
    #[cfg(test)]
    pub(crate) fn avg_record(&self) -> usize {
        self.avg_record.load(Ordering::Relaxed)
    }

    /// Folds one encoded record's size into the running average (an
    /// exponential moving average with weight 1/16) and updates the limits
    /// that depend on it.
    pub(crate) fn observe_record(&self, bytes: usize) {
        let old = self.avg_record.load(Ordering::Relaxed);
        let new = (old.saturating_mul(15).saturating_add(bytes) / 16).max(1);
        if new != old {
            self.avg_record.store(new, Ordering::Relaxed);
            self.update_limits(new);
        }
    }

    fn update_limits(&self, avg: usize) {
        let avg = avg.max(1);
        // One separator byte per record.
        let per_batch = (self.max_batch_bytes / avg.saturating_add(1)).clamp(1, self.max_batch_events);
        self.nudge_at.store(per_batch, Ordering::Relaxed);
        if let Some(max) = self.max_buffered_bytes {
            self.byte_cap.store((max / avg).clamp(1, self.queue.capacity()), Ordering::Relaxed);
        }
    }
}

/// The event was not accepted; it is handed back.
///
/// Both cases are counted in the ledger: `Full` under `queue_full`, `Closed`
/// under `shutdown`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Dropped<E> {
    /// The buffer is full and the policy is [`OverflowPolicy::DropNewest`].
    Full(E),
    /// The pipeline has shut down (or [`EventsHandle::close`](crate::EventsHandle::close) was called).
    Closed(E),
}

impl<E> Dropped<E> {
    /// The event that was not accepted.
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_events::Dropped;
    /// assert_eq!(Dropped::Full(7).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> E {
        match self {
            Dropped::Full(e) | Dropped::Closed(e) => e,
        }
    }

    /// The reason the drop was counted under.
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_events::{DropReason, Dropped};
    /// assert_eq!(Dropped::Closed(()).reason(), DropReason::Shutdown);
    /// ```
    pub fn reason(&self) -> DropReason {
        match self {
            Dropped::Full(_) => DropReason::QueueFull,
            Dropped::Closed(_) => DropReason::Shutdown,
        }
    }

    /// Whether the buffer was full.
    pub fn is_full(&self) -> bool {
        matches!(self, Dropped::Full(_))
    }

    /// Whether the pipeline was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, Dropped::Closed(_))
    }
}

impl<E> fmt::Debug for Dropped<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dropped::Full(_) => f.write_str("Full(..)"),
            Dropped::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<E> fmt::Display for Dropped<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dropped::Full(_) => f.write_str("event dropped: the event buffer is full"),
            Dropped::Closed(_) => f.write_str("event dropped: the event pipeline is closed"),
        }
    }
}

impl<E> std::error::Error for Dropped<E> {}

/// The emitting side of a pipeline: cheap to clone, safe to share, never
/// blocks.
///
/// # About threads and cloning
///
/// A clone shares the same buffer and ledger. [`emit`](Emitter::emit) takes
/// no lock at all: it stamps the event with a sequence number and the time,
/// and pushes it onto a bounded lock-free queue; it counts nothing (the
/// ledger derives `accepted`), and a drop is counted in this thread's own
/// cache-padded stripe of the ledger. When the queue reaches a
/// batch's worth it wakes the batcher with a non-blocking `try_tell`, once
/// per drain. The batcher's locks, its sink and its delivery never stand in
/// the way: if the sink hangs, `emit` keeps returning at once, dropping
/// events by the [`OverflowPolicy`] and counting every drop.
///
/// Sequence numbers are unique in the process and increase per thread (a
/// thread reserves them in blocks of 64, so they do not increase across
/// threads). The timestamp is the Unix time in milliseconds from a clock
/// thread that ticks every millisecond while events flow; it may lag by that
/// thread's scheduling latency.
///
/// The first drop of each reason logs one warning (target
/// `vigil::events`) from the thread that saw it; later drops are only
/// counted.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use vigil_events::{Batch, Config, Delivery, Dropped, EventPipeline, Sink};
/// # struct Null;
/// # impl Sink for Null {
/// #     fn deliver(&mut self, _: &Batch, _: Option<Duration>) -> Delivery { Delivery::Delivered }
/// # }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (emitter, _events, handle) = EventPipeline::builder(Config::default().capacity(2).max_batch_events(2))
///     .sink(|| Ok::<_, std::io::Error>(Null))
///     .build()?;
/// emitter.emit(serde_json::json!({"path": "/pay", "status": 200}))?;
/// emitter.emit(serde_json::json!({"path": "/pay", "status": 500}))?;
/// // The batcher is not running, so the buffer is full now.
/// let refused = emitter.emit(serde_json::json!({"path": "/refund"})).unwrap_err();
/// assert!(matches!(refused, Dropped::Full(_)));
/// let ledger = handle.ledger();
/// assert_eq!((ledger.accepted, ledger.queued, ledger.dropped.queue_full), (3, 2, 1));
/// # Ok(())
/// # }
/// ```
pub struct Emitter<E> {
    pub(crate) shared: Arc<Shared<E>>,
}

impl<E> Clone for Emitter<E> {
    fn clone(&self) -> Emitter<E> {
        Emitter { shared: Arc::clone(&self.shared) }
    }
}

impl<E: Send + 'static> Emitter<E> {
    /// Queues an event for delivery.
    ///
    /// Never blocks and never panics.
    ///
    /// # Errors
    ///
    /// Hands the event back in [`Dropped::Full`] when the buffer is full under
    /// [`OverflowPolicy::DropNewest`], and in [`Dropped::Closed`] once the
    /// pipeline has shut down. Either way the drop is counted in the ledger.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use vigil_events::{Batch, Config, Delivery, EventPipeline, Sink};
    /// # struct Null;
    /// # impl Sink for Null {
    /// #     fn deliver(&mut self, _: &Batch, _: Option<Duration>) -> Delivery { Delivery::Delivered }
    /// # }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = Config::default().capacity(64).max_batch_events(16);
    /// let (emitter, events, handle) = EventPipeline::builder(config)
    ///     .sink(|| Ok::<_, std::io::Error>(Null))
    ///     .build()?;
    /// let system = vigil_core::Supervisor::builder().child(events).start()?;
    /// // In a request handler: hand the event over and move on.
    /// if let Err(dropped) = emitter.emit(serde_json::json!({"path": "/charge"})) {
    ///     eprintln!("event dropped: {dropped}"); // counted in the ledger either way
    /// }
    /// handle.flush(Duration::from_secs(5))?;
    /// assert_eq!(handle.ledger().delivered, 1);
    /// system.shutdown()?;
    /// # Ok(())
    /// # }
    /// ```
    #[inline]
    pub fn emit(&self, event: E) -> Result<(), Dropped<E>> {
        self.shared.buffer.push(event, &self.shared.ledger)
    }
}

impl<E> Emitter<E> {
    /// The number of events waiting in the buffer.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use vigil_events::{Batch, Config, Delivery, EventPipeline, Sink};
    /// # struct Null;
    /// # impl Sink for Null {
    /// #     fn deliver(&mut self, _: &Batch, _: Option<Duration>) -> Delivery { Delivery::Delivered }
    /// # }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = Config::default().capacity(64).max_batch_events(16);
    /// let (emitter, events, handle) = EventPipeline::builder(config)
    ///     .sink(|| Ok::<_, std::io::Error>(Null))
    ///     .build()?;
    /// # drop(events);
    /// emitter.emit(serde_json::json!({"n": 1}))?;
    /// assert_eq!(emitter.len(), 1); // nothing delivers: the batcher is not started
    /// assert!(!emitter.is_empty());
    /// assert_eq!(emitter.capacity(), 64);
    /// # Ok(())
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.shared.buffer.len()
    }

    /// Whether the buffer is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use vigil_events::{Batch, Config, Delivery, EventPipeline, Sink};
    /// # struct Null;
    /// # impl Sink for Null {
    /// #     fn deliver(&mut self, _: &Batch, _: Option<Duration>) -> Delivery { Delivery::Delivered }
    /// # }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = Config::default().capacity(64).max_batch_events(16);
    /// let (emitter, events, handle) = EventPipeline::builder(config)
    ///     .sink(|| Ok::<_, std::io::Error>(Null))
    ///     .build()?;
    /// # drop((events, handle));
    /// assert!(emitter.is_empty());
    /// emitter.emit(serde_json::json!({"n": 1}))?;
    /// assert!(!emitter.is_empty()); // the batcher is not started
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.shared.buffer.len() == 0
    }

    /// The most events the buffer holds.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use vigil_events::{Batch, Config, Delivery, EventPipeline, Sink};
    /// # struct Null;
    /// # impl Sink for Null {
    /// #     fn deliver(&mut self, _: &Batch, _: Option<Duration>) -> Delivery { Delivery::Delivered }
    /// # }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = Config::default().capacity(64).max_batch_events(16);
    /// let (emitter, events, handle) = EventPipeline::builder(config)
    ///     .sink(|| Ok::<_, std::io::Error>(Null))
    ///     .build()?;
    /// # drop((events, handle));
    /// assert_eq!(emitter.capacity(), 64);
    /// emitter.emit(serde_json::json!({"n": 1}))?;
    /// assert_eq!(emitter.capacity() - emitter.len(), 63);
    /// # Ok(())
    /// # }
    /// ```
    pub fn capacity(&self) -> usize {
        self.shared.buffer.capacity()
    }

    /// Whether the pipeline has closed; every later `emit` fails with
    /// [`Dropped::Closed`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use vigil_events::{Batch, Config, Delivery, EventPipeline, Sink};
    /// # struct Null;
    /// # impl Sink for Null {
    /// #     fn deliver(&mut self, _: &Batch, _: Option<Duration>) -> Delivery { Delivery::Delivered }
    /// # }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = Config::default().capacity(64).max_batch_events(16);
    /// let (emitter, events, handle) = EventPipeline::builder(config)
    ///     .sink(|| Ok::<_, std::io::Error>(Null))
    ///     .build()?;
    /// # drop(events);
    /// assert!(!emitter.is_closed());
    /// handle.close();
    /// assert!(emitter.is_closed());
    /// assert!(emitter.emit(serde_json::json!({"late": true})).unwrap_err().is_closed());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.buffer.is_closed()
    }

    /// A snapshot of the ledger.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use vigil_events::{Batch, Config, Delivery, EventPipeline, Sink};
    /// # struct Null;
    /// # impl Sink for Null {
    /// #     fn deliver(&mut self, _: &Batch, _: Option<Duration>) -> Delivery { Delivery::Delivered }
    /// # }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = Config::default().capacity(64).max_batch_events(16);
    /// let (emitter, events, handle) = EventPipeline::builder(config)
    ///     .sink(|| Ok::<_, std::io::Error>(Null))
    ///     .build()?;
    /// # drop((events, handle));
    /// emitter.emit(serde_json::json!({"n": 1}))?;
    /// let ledger = emitter.ledger();
    /// assert_eq!((ledger.accepted, ledger.queued, ledger.delivered), (1, 1, 0));
    /// assert!(ledger.is_balanced());
    /// # Ok(())
    /// # }
    /// ```
    pub fn ledger(&self) -> LedgerSnapshot {
        self.shared.snapshot()
    }
}

impl<E> fmt::Debug for Emitter<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emitter").field("buffer", &self.shared.buffer).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::unix_ms;
    use std::sync::atomic::AtomicUsize;

    fn buffer(config: Config) -> (Buffer<u32>, Ledger) {
        (Buffer::new(&config), Ledger::new())
    }

    #[test]
    fn drop_newest_refuses_and_counts() {
        let (b, l) = buffer(Config::default().capacity(4).max_batch_events(4));
        for i in 0..4 {
            assert_eq!(b.push(i, &l), Ok(()));
        }
        assert_eq!(b.push(99, &l), Err(Dropped::Full(99)));
        let s = l.snapshot(b.len() as u64, b.taken());
        assert_eq!((s.accepted, s.dropped.queue_full, s.queued), (5, 1, 4));
        assert!(s.is_balanced());
        let seqs: Vec<u32> = std::iter::from_fn(|| b.pop()).map(|e| e.event).collect();
        assert_eq!(seqs, vec![0, 1, 2, 3]);
    }

    #[test]
    fn drop_oldest_evicts_and_counts() {
        let (b, l) = buffer(Config::default().capacity(4).max_batch_events(4).overflow(OverflowPolicy::DropOldest));
        for i in 0..10 {
            assert_eq!(b.push(i, &l), Ok(()));
        }
        let s = l.snapshot(b.len() as u64, b.taken());
        assert_eq!((s.accepted, s.dropped.oldest_evicted, s.queued), (10, 6, 4));
        assert!(s.is_balanced());
        let kept: Vec<u32> = std::iter::from_fn(|| b.pop()).map(|e| e.event).collect();
        assert_eq!(kept, vec![6, 7, 8, 9]);
    }

    #[test]
    fn closed_buffer_refuses_with_shutdown_reason() {
        let (b, l) = buffer(Config::default().capacity(4).max_batch_events(4));
        b.close();
        assert_eq!(b.push(1, &l), Err(Dropped::Closed(1)));
        let s = l.snapshot(0, 0);
        assert_eq!((s.accepted, s.dropped.shutdown), (1, 1));
    }

    #[test]
    fn byte_bound_uses_observed_record_size() {
        // 1000 bytes at an estimated 100 bytes per record: 10 events.
        let config = Config::default()
            .capacity(100)
            .max_batch_events(10)
            .initial_record_estimate(100)
            .max_buffered_bytes(Some(1000));
        let (b, l) = buffer(config);
        for i in 0..10 {
            assert_eq!(b.push(i, &l), Ok(()));
        }
        assert!(b.push(10, &l).unwrap_err().is_full());
        // Records turn out to be much smaller: the bound admits more.
        for _ in 0..200 {
            b.observe_record(10);
        }
        assert!(b.avg_record() < 20);
        assert_eq!(b.push(11, &l), Ok(()));
        let s = l.snapshot(b.len() as u64, b.taken());
        assert_eq!((s.accepted, s.dropped.queue_full, s.queued), (12, 1, 11));
    }

    #[test]
    fn byte_bound_with_drop_oldest_evicts() {
        let config = Config::default()
            .capacity(100)
            .max_batch_events(10)
            .initial_record_estimate(100)
            .max_buffered_bytes(Some(500))
            .overflow(OverflowPolicy::DropOldest);
        let (b, l) = buffer(config);
        for i in 0..8 {
            assert_eq!(b.push(i, &l), Ok(()));
        }
        let s = l.snapshot(b.len() as u64, b.taken());
        assert_eq!((s.queued, s.dropped.oldest_evicted), (5, 3));
        assert!(s.is_balanced());
    }

    #[test]
    fn wakes_batcher_once_per_batch_worth() {
        let (b, l) = buffer(Config::default().capacity(100).max_batch_events(10).initial_record_estimate(10));
        let wakes = Arc::new(AtomicUsize::new(0));
        let w = Arc::clone(&wakes);
        b.set_waker(Box::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        }));
        for i in 0..9 {
            b.push(i, &l).unwrap();
        }
        assert_eq!(wakes.load(Ordering::SeqCst), 0);
        for i in 0..30 {
            b.push(i, &l).unwrap();
        }
        assert_eq!(wakes.load(Ordering::SeqCst), 1, "one wake until re-armed");
        b.rearm();
        b.push(0, &l).unwrap();
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn entries_carry_unique_seqs_and_time() {
        let (b, l) = buffer(Config::default().capacity(8).max_batch_events(8));
        let before = unix_ms();
        b.push(1, &l).unwrap();
        b.push(2, &l).unwrap();
        let a = b.pop().unwrap();
        let c = b.pop().unwrap();
        assert!(a.seq < c.seq);
        // The coarse clock may lag by a tick (more on a loaded machine).
        assert!(a.ts_ms + 1000 >= before && a.ts_ms <= unix_ms());
    }

    #[test]
    fn dropped_is_an_error_that_returns_the_event() {
        let d: Dropped<String> = Dropped::Full("x".into());
        assert_eq!(d.reason(), DropReason::QueueFull);
        assert!(d.to_string().contains("full"));
        assert_eq!(format!("{d:?}"), "Full(..)");
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(Dropped::Closed(5u8));
        assert!(boxed.to_string().contains("closed"));
        assert_eq!(d.into_inner(), "x");
    }
}
