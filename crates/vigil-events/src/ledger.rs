//! The ledger: where every event ends up.
//!
//! A successful `emit` counts nothing: `accepted` is derived from what the
//! batcher took out of the buffer, what is still in it, and the emitters'
//! drops. Drops (the cold path) go into cache-padded stripes (one per thread,
//! round robin), so they never contend on a shared cache line. The batcher is
//! the only writer of its own counters. A snapshot sums them up; it takes no
//! lock the batcher holds while delivering.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::local::{STRIPES, stripe};

const TARGET: &str = "vigil::events";

/// Why an event was dropped. Every drop is counted under exactly one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DropReason {
    /// `emit` found the buffer full under [`OverflowPolicy::DropNewest`](crate::OverflowPolicy::DropNewest).
    QueueFull,
    /// Evicted from a full buffer under [`OverflowPolicy::DropOldest`](crate::OverflowPolicy::DropOldest).
    OldestEvicted,
    /// The sink answered [`Delivery::Rejected`](crate::Delivery::Rejected) for the batch.
    Rejected,
    /// Too large to deliver on its own: the encoded record exceeds
    /// `max_batch_bytes`, or the sink answered
    /// [`Delivery::TooLarge`](crate::Delivery::TooLarge) for a batch of this
    /// one event.
    TooLarge,
    /// Its batch kept failing past `max_batch_age`.
    Expired,
    /// Still undelivered when the final flush ran out of budget, or emitted
    /// after the pipeline closed.
    Shutdown,
    /// Serializing the event failed (or panicked).
    Encode,
    /// Its record in the spool was damaged: a checksum mismatch, or bytes
    /// torn off or garbled, found when the spool was recovered at start or
    /// read back. See [`Config::spool`](crate::Config::spool).
    Corrupt,
}

impl DropReason {
    /// Every reason, in the order the ledger lists them.
    pub const ALL: [DropReason; 8] = [
        DropReason::QueueFull,
        DropReason::OldestEvicted,
        DropReason::Rejected,
        DropReason::TooLarge,
        DropReason::Expired,
        DropReason::Shutdown,
        DropReason::Encode,
        DropReason::Corrupt,
    ];

    /// The reason's name as it appears in the ledger and in logs.
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_events::DropReason;
    /// assert_eq!(DropReason::QueueFull.as_str(), "queue_full");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::OldestEvicted => "oldest_evicted",
            DropReason::Rejected => "rejected",
            DropReason::TooLarge => "too_large",
            DropReason::Expired => "expired",
            DropReason::Shutdown => "shutdown",
            DropReason::Encode => "encode",
            DropReason::Corrupt => "corrupt",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Dropped events, counted by [`DropReason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct DropCounts {
    /// See [`DropReason::QueueFull`].
    pub queue_full: u64,
    /// See [`DropReason::OldestEvicted`].
    pub oldest_evicted: u64,
    /// See [`DropReason::Rejected`].
    pub rejected: u64,
    /// See [`DropReason::TooLarge`].
    pub too_large: u64,
    /// See [`DropReason::Expired`].
    pub expired: u64,
    /// See [`DropReason::Shutdown`].
    pub shutdown: u64,
    /// See [`DropReason::Encode`].
    pub encode: u64,
    /// See [`DropReason::Corrupt`].
    #[serde(default)]
    pub corrupt: u64,
}

impl DropCounts {
    /// The count for one reason.
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_events::{DropCounts, DropReason};
    /// let counts = DropCounts { expired: 3, ..DropCounts::default() };
    /// assert_eq!(counts.get(DropReason::Expired), 3);
    /// assert_eq!(counts.total(), 3);
    /// ```
    pub fn get(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::QueueFull => self.queue_full,
            DropReason::OldestEvicted => self.oldest_evicted,
            DropReason::Rejected => self.rejected,
            DropReason::TooLarge => self.too_large,
            DropReason::Expired => self.expired,
            DropReason::Shutdown => self.shutdown,
            DropReason::Encode => self.encode,
            DropReason::Corrupt => self.corrupt,
        }
    }

    pub(crate) fn get_mut(&mut self, reason: DropReason) -> &mut u64 {
        match reason {
            DropReason::QueueFull => &mut self.queue_full,
            DropReason::OldestEvicted => &mut self.oldest_evicted,
            DropReason::Rejected => &mut self.rejected,
            DropReason::TooLarge => &mut self.too_large,
            DropReason::Expired => &mut self.expired,
            DropReason::Shutdown => &mut self.shutdown,
            DropReason::Encode => &mut self.encode,
            DropReason::Corrupt => &mut self.corrupt,
        }
    }

    /// The per-reason difference `self - earlier`.
    pub(crate) fn since(&self, earlier: &DropCounts) -> DropCounts {
        let mut out = DropCounts::default();
        for reason in DropReason::ALL {
            *out.get_mut(reason) = self.get(reason).saturating_sub(earlier.get(reason));
        }
        out
    }

    /// All drops, whatever the reason.
    pub fn total(&self) -> u64 {
        DropReason::ALL.iter().map(|&r| self.get(r)).sum()
    }
}

/// The most recent delivery failure.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LastError {
    /// What failed: `retryable`, `too_large`, `rejected`, `fatal`, `panic`
    /// (the batcher died during a delivery or while encoding) or
    /// `sink_factory` (building the sink failed).
    pub kind: String,
    /// The error's message.
    pub message: String,
    /// When it happened, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
}

/// A point-in-time copy of the ledger. Serializes with serde.
///
/// **The invariant.** `accepted = delivered + dropped.total() + pending`
/// holds whenever no `emit` is running and the batcher is between steps
/// (idle, waiting for a retry, or stopped); [`is_balanced`](Self::is_balanced)
/// checks it. While events move the counts can be off by the few events in
/// motion.
///
/// # Examples
///
/// ```
/// use vigil_events::LedgerSnapshot;
/// let snapshot = LedgerSnapshot::default();
/// assert!(snapshot.is_balanced());
/// let json = serde_json::to_value(&snapshot).unwrap();
/// assert_eq!(json["dropped"]["queue_full"], 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct LedgerSnapshot {
    /// Every event handed to `emit`. An event refused by `emit` counts here
    /// and under its drop reason (`queue_full` or `shutdown`).
    pub accepted: u64,
    /// Events in batches the sink reported delivered.
    pub delivered: u64,
    /// Dropped events by reason.
    pub dropped: DropCounts,
    /// Events neither delivered nor dropped: `queued + spooled + in_flight`.
    pub pending: u64,
    /// Events waiting in the buffer.
    pub queued: u64,
    /// With a spool: events taken from the buffer by the spool writer (or
    /// found on disk at start) that the batcher has not taken yet: on disk,
    /// being written, or kept in memory while the disk is unavailable.
    #[serde(default)]
    pub spooled: u64,
    /// Events the batcher has taken from the buffer and not yet resolved: the
    /// batch being assembled, the batch being delivered or waiting for a retry
    /// (and the other half of a split batch), and an event being encoded.
    pub in_flight: u64,
    /// Batches delivered.
    pub batches: u64,
    /// Delivery attempts, first tries and retries.
    pub attempts: u64,
    /// Delivery attempts that repeated an earlier failed attempt of the same batch.
    pub retries: u64,
    /// Batches split in halves after [`Delivery::TooLarge`](crate::Delivery::TooLarge).
    pub splits: u64,
    /// Batcher restarts (incarnations after the first).
    pub restarts: u64,
    /// With a spool: events found on disk at start, not yet delivered
    /// before the restart; they are delivered first.
    #[serde(default)]
    pub recovered: u64,
    /// With a spool: events made durable on disk since start, under the
    /// spool's sync policy.
    #[serde(default)]
    pub durable: u64,
    /// With a spool: events that went from memory to the sink without
    /// touching the disk because the spool was at its `max_bytes`.
    #[serde(default)]
    pub spool_full: u64,
    /// With a spool: events that went from memory to the sink without
    /// touching the disk because it failed (full disk, EIO, read-only or
    /// vanished directory).
    #[serde(default)]
    pub spool_unavailable: u64,
    /// The most recent failure, if any.
    pub last_error: Option<LastError>,
}

impl LedgerSnapshot {
    /// Whether `accepted = delivered + dropped + pending`.
    pub fn is_balanced(&self) -> bool {
        self.accepted == self.delivered + self.dropped.total() + self.pending
    }
}

impl fmt::Display for LedgerSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accepted={} delivered={} pending={} (queued={} in_flight={}) dropped={}",
            self.accepted,
            self.delivered,
            self.pending,
            self.queued,
            self.in_flight,
            self.dropped.total()
        )?;
        if self.spooled + self.recovered + self.durable + self.spool_full + self.spool_unavailable > 0 {
            write!(
                f,
                " spooled={} recovered={} durable={} spool_full={} spool_unavailable={}",
                self.spooled, self.recovered, self.durable, self.spool_full, self.spool_unavailable
            )?;
        }
        for reason in DropReason::ALL {
            let n = self.dropped.get(reason);
            if n > 0 {
                write!(f, " {reason}={n}")?;
            }
        }
        write!(
            f,
            " batches={} attempts={} retries={} splits={} restarts={}",
            self.batches, self.attempts, self.retries, self.splits, self.restarts
        )
    }
}

/// Counters written by emitters; one per thread stripe, padded to its own
/// cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe {
    queue_full: AtomicU64,
    oldest_evicted: AtomicU64,
    shutdown: AtomicU64,
}

/// The shared ledger behind [`LedgerSnapshot`].
#[derive(Debug)]
pub(crate) struct Ledger {
    stripes: Box<[Stripe]>,
    // Written only by the batcher.
    delivered: AtomicU64,
    batcher_drops: [AtomicU64; DropReason::ALL.len()],
    batches: AtomicU64,
    attempts: AtomicU64,
    retries: AtomicU64,
    splits: AtomicU64,
    restarts: AtomicU64,
    in_flight: AtomicU64,
    warned: [AtomicBool; DropReason::ALL.len()],
    last_error: Mutex<Option<LastError>>,
    /// With a spool: what earlier runs on the same spool resolved, and what
    /// they left on disk, set once at build.
    base: Mutex<LedgerBase>,
    spool: SpoolCounters,
}

/// What earlier runs of a spooled pipeline account for (see
/// [`Ledger::set_base`]).
#[derive(Debug, Default, Clone)]
pub(crate) struct LedgerBase {
    pub(crate) accepted: u64,
    pub(crate) delivered: u64,
    pub(crate) dropped: DropCounts,
}

/// The spool's gauges and counters.
#[derive(Debug, Default)]
pub(crate) struct SpoolCounters {
    /// See [`LedgerSnapshot::spooled`]. Raised by the spool writer, lowered by the batcher.
    pub(crate) spooled: AtomicU64,
    pub(crate) recovered: AtomicU64,
    pub(crate) durable: AtomicU64,
    pub(crate) full: AtomicU64,
    pub(crate) unavailable: AtomicU64,
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Ledger {
    pub(crate) fn new() -> Ledger {
        Ledger {
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
            delivered: AtomicU64::new(0),
            batcher_drops: Default::default(),
            batches: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            splits: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            warned: Default::default(),
            last_error: Mutex::new(None),
            base: Mutex::new(LedgerBase::default()),
            spool: SpoolCounters::default(),
        }
    }

    /// Sets what earlier runs on the same spool account for: their resolved
    /// events, the events they left on disk (`recovered`, pending now) and
    /// the damaged ones (`corrupt`, dropped now). Called once, at build.
    pub(crate) fn set_base(&self, mut base: LedgerBase, recovered: u64, corrupt: u64) {
        base.dropped.corrupt += corrupt;
        base.accepted = base.delivered + base.dropped.total() + recovered;
        *self.base.lock() = base;
        self.spool.recovered.store(recovered, Ordering::Relaxed);
        self.spool.spooled.store(recovered, Ordering::Relaxed);
    }

    pub(crate) fn spool(&self) -> &SpoolCounters {
        &self.spool
    }

    // ---- emitter side (hot path) ----

    /// Counts a drop on the emitting thread, in that thread's stripe.
    #[cold]
    pub(crate) fn emitter_drop(&self, reason: DropReason) {
        let stripe = &self.stripes[stripe()];
        let counter = match reason {
            DropReason::QueueFull => &stripe.queue_full,
            DropReason::OldestEvicted => &stripe.oldest_evicted,
            _ => &stripe.shutdown,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.warn_first(reason);
    }

    fn warn_first(&self, reason: DropReason) {
        let flag = &self.warned[reason.index()];
        if !flag.load(Ordering::Relaxed) && !flag.swap(true, Ordering::Relaxed) {
            let why = match reason {
                DropReason::QueueFull => "the buffer is full; emit refuses new events",
                DropReason::OldestEvicted => "the buffer is full; the oldest events are evicted",
                DropReason::Rejected => "the sink rejected a batch",
                DropReason::TooLarge => "an event is too large to deliver on its own",
                DropReason::Expired => "a batch kept failing past max_batch_age",
                DropReason::Shutdown => "events were undelivered at shutdown or emitted after it",
                DropReason::Encode => "an event failed to serialize",
                DropReason::Corrupt => "spooled records were damaged on disk",
            };
            log::warn!(target: TARGET, "first event dropped for reason `{reason}`: {why}; later drops of this reason are counted in the ledger");
        }
    }

    // ---- batcher side ----

    pub(crate) fn batcher_drop(&self, reason: DropReason, n: u64) {
        if n == 0 {
            return;
        }
        self.batcher_drops[reason.index()].fetch_add(n, Ordering::Relaxed);
        self.warn_first(reason);
    }

    pub(crate) fn delivered(&self, events: u64) {
        self.delivered.fetch_add(events, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn attempt(&self, retry: bool) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if retry {
            self.retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn split(&self) {
        self.splits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn restarted(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_in_flight(&self, n: u64) {
        self.in_flight.store(n, Ordering::Relaxed);
    }

    pub(crate) fn set_last_error(&self, kind: &str, message: String) {
        *self.last_error.lock() = Some(LastError { kind: kind.to_owned(), message, at_unix_ms: unix_ms() });
    }

    pub(crate) fn last_error_is(&self, kind: &str) -> bool {
        self.last_error.lock().as_ref().is_some_and(|e| e.kind == kind)
    }

    /// Failures and drops so far, for deciding whether to log a summary.
    pub(crate) fn trouble(&self) -> (u64, u64) {
        let s = self.snapshot(0, 0);
        (s.dropped.total(), s.attempts.saturating_sub(s.batches))
    }

    /// `queued` is the buffer's length and `taken` what the batcher has taken
    /// out of it. Every `emit` either left its event in the buffer (queued,
    /// or taken since) or was refused (an emitter drop), so
    /// `accepted = taken + queued + emitter drops`: no counter on the hot path.
    /// Exact whenever nothing is moving, like the invariant itself.
    pub(crate) fn snapshot(&self, queued: u64, taken: u64) -> LedgerSnapshot {
        let mut dropped = DropCounts::default();
        for s in self.stripes.iter() {
            dropped.queue_full += s.queue_full.load(Ordering::Relaxed);
            dropped.oldest_evicted += s.oldest_evicted.load(Ordering::Relaxed);
            dropped.shutdown += s.shutdown.load(Ordering::Relaxed);
        }
        let accepted = taken + queued + dropped.queue_full + dropped.oldest_evicted + dropped.shutdown;
        for reason in DropReason::ALL {
            *dropped.get_mut(reason) += self.batcher_drops[reason.index()].load(Ordering::Relaxed);
        }
        let in_flight = self.in_flight.load(Ordering::Relaxed);
        let base = self.base.lock().clone();
        for reason in DropReason::ALL {
            *dropped.get_mut(reason) += base.dropped.get(reason);
        }
        let spooled = self.spool.spooled.load(Ordering::Relaxed);
        LedgerSnapshot {
            accepted: accepted + base.accepted,
            delivered: self.delivered.load(Ordering::Relaxed) + base.delivered,
            dropped,
            pending: queued + spooled + in_flight,
            queued,
            spooled,
            recovered: self.spool.recovered.load(Ordering::Relaxed),
            durable: self.spool.durable.load(Ordering::Relaxed),
            spool_full: self.spool.full.load(Ordering::Relaxed),
            spool_unavailable: self.spool.unavailable.load(Ordering::Relaxed),
            in_flight,
            batches: self.batches.load(Ordering::Relaxed),
            attempts: self.attempts.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            splits: self.splits.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
            last_error: self.last_error.lock().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_are_padded() {
        assert!(std::mem::align_of::<Stripe>() >= 128);
    }

    #[test]
    fn snapshot_sums_stripes_and_batcher_counters() {
        let ledger = Ledger::new();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..10 {
                        ledger.emitter_drop(DropReason::QueueFull);
                    }
                });
            }
        });
        ledger.batcher_drop(DropReason::Expired, 5);
        ledger.batcher_drop(DropReason::Shutdown, 2);
        ledger.delivered(250);
        ledger.set_in_flight(3);
        // 290 taken by the batcher, 10 still queued, 40 refused by emitters.
        let s = ledger.snapshot(10, 290);
        assert_eq!(s.accepted, 340);
        assert_eq!(s.dropped.queue_full, 40);
        assert_eq!(s.dropped.expired, 5);
        assert_eq!(s.dropped.shutdown, 2);
        assert_eq!(s.delivered, 250);
        assert_eq!(s.batches, 1);
        assert_eq!(s.pending, 13);
        assert_eq!(s.delivered + s.dropped.total() + s.pending, 310);
        assert!(!s.is_balanced());
    }

    #[test]
    fn snapshot_serializes_reason_names() {
        let ledger = Ledger::new();
        ledger.set_last_error("fatal", "certificate expired".into());
        let json = serde_json::to_value(ledger.snapshot(0, 0)).unwrap();
        for reason in DropReason::ALL {
            assert_eq!(json["dropped"][reason.as_str()], 0, "{reason}");
        }
        assert_eq!(json["last_error"]["kind"], "fatal");
        assert_eq!(json["last_error"]["message"], "certificate expired");
    }
}
