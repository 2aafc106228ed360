//! The batcher's state machine, independent of the actor that drives it.
//!
//! Everything here lives in one [`Shared`] value behind an `Arc` that the
//! batcher actor's factory hands to every incarnation: the buffer, the ledger
//! and the delivery state (the batch being assembled, the batch in flight and
//! its retry schedule). An incarnation that dies — a panic in the sink or in
//! an event's `Serialize`, or a fatal delivery — leaves it all behind for the
//! next one, which calls [`Shared::recover`] first.
//!
//! Time comes from a [`Clock`], so retry, backoff and expiry are tested
//! without waiting.
//!
//! Locking: the state mutex is taken only by the batcher's thread (and by the
//! pipeline's finalizer when it stops), and it is released while the sink
//! runs. Emitters and ledger snapshots never take it.
//!
//! Fencing: each incarnation gets an increasing token and claims the state
//! with it when it starts; the finalizer claims it last, when the pipeline
//! stops. Only the owner's work counts: an incarnation that was abandoned (its
//! sink did not return in time) and comes back later finds another owner and
//! leaves everything alone.
//!
//! The parts: this file holds the state and its ownership; `assemble` builds
//! batches from the buffer or the spool; `delivery` makes one attempt and
//! applies its result (retry, split, expiry); `drain` drives them, for the
//! batcher's steps and for flushes.

use std::collections::VecDeque;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;

use crate::buffer::Buffer;
use crate::clock::{Clock, later};
use crate::config::Config;
use crate::encode::{Staging, encode_record, encode_spooled, framed_len, split};
use crate::flush::FlushReport;
use crate::ledger::{DropReason, Ledger, LedgerSnapshot};
use crate::spool::{SpoolState, Taken};
use vigil_core::BoxError;

use crate::sink::{Batch, Delivery, Sink};

mod assemble;
mod delivery;
mod drain;
#[cfg(test)]
mod tests;

const TARGET: &str = "vigil::events";

/// A prefix for idempotency keys that differs between processes.
fn process_prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let mut h = RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        if let Ok(d) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
            h.write_u128(d.as_nanos());
        }
        format!("{:016x}", h.finish())
    })
}

fn random_seed() -> u64 {
    RandomState::new().build_hasher().finish() | 1
}

/// One batch handed to the sink, possibly more than once.
#[derive(Debug)]
struct InFlight {
    batch: Arc<Batch>,
    spans: Vec<Range<usize>>,
    created: Instant,
    attempts: u32,
    next_attempt: Instant,
    /// The receiver's retry-after, which even a flush honours.
    retry_after_until: Option<Instant>,
    /// Whether the current drain (flush or shutdown) has tried it already.
    tried_in_drain: bool,
    /// Read from the spool: resolving it acknowledges every record numbered
    /// below this.
    ack: Option<u64>,
}

#[derive(Debug)]
struct State {
    staging: Staging,
    /// An encoded record that did not fit the previous batch.
    /// An encoded record that did not fit the previous batch, and whether it
    /// was read from the spool.
    carry: Option<(u64, Vec<u8>, bool)>,
    /// With a spool: whether the records staged were read from disk (a batch
    /// holds records of one source only).
    staging_disk: Option<bool>,
    scratch: Vec<u8>,
    /// The sequence number of the event being serialized.
    encoding: Option<u64>,
    /// The batch in flight first; more only after a split.
    batches: VecDeque<InFlight>,
    /// Set while the sink runs: found set at a restart, the incarnation died in it.
    attempt_running: bool,
    /// The last time the batcher saw nothing queued.
    last_empty: Option<Instant>,
    /// Consecutive failed attempts, for the backoff.
    failures: u32,
    rng: u64,
    last_summary: Option<Instant>,
    summary_seen: (u64, u64),
    /// Whether the owner's final flush (or the finalizer) has settled the
    /// pipeline since the owner claimed it.
    settled: bool,
}

impl State {
    fn in_flight(&self) -> u64 {
        let batches: usize = self.batches.iter().map(|b| b.batch.len()).sum();
        (self.staging.len() + batches + usize::from(self.carry.is_some()) + usize::from(self.encoding.is_some())) as u64
    }

    fn staged(&self) -> usize {
        self.staging.len() + usize::from(self.carry.is_some())
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

enum Front {
    None,
    Wait(Instant),
    Due,
}

/// How long a drain, or the batcher waiting for its sink to be built, waits at
/// most before it looks again whether it must stop.
pub(crate) const STOP_POLL: Duration = Duration::from_millis(10);

/// When a drain ends at the latest: a deadline, or when asked to stop.
type Until<'a> = (Instant, &'a dyn Fn() -> bool);

/// How a drain (flush or shutdown) ended.
#[derive(Debug)]
pub(crate) enum DrainEnd {
    /// Everything it set out to deliver is resolved.
    Complete,
    /// The deadline came first.
    Deadline,
    /// The batcher was asked to stop, or another incarnation owns the state.
    Stopped,
    /// The sink failed fatally; the batcher must restart.
    Fatal(BoxError),
}

/// Everything that outlives a batcher incarnation.
#[derive(Debug)]
pub(crate) struct Shared<E> {
    pub(crate) buffer: Buffer<E>,
    pub(crate) ledger: Ledger,
    pub(crate) config: Config,
    /// With [`Config::spool`]: the opened spool.
    pub(crate) spool: Option<SpoolState>,
    prefix: &'static str,
    state: Mutex<State>,
    final_report: Mutex<Option<FlushReport>>,
    /// The next incarnation token (tokens start at 1; 0 is the owner before
    /// anyone claimed the state).
    tokens: AtomicU64,
    /// The token of the incarnation that may change the state. Written only
    /// with the state lock held.
    owner: AtomicU64,
}

impl<E> Shared<E> {
    /// Builds the shared state. `config` must have been validated.
    #[cfg(test)]
    pub(crate) fn new(config: Config) -> Shared<E> {
        Shared::with_spool(config, None)
    }

    /// Builds the shared state, with the spool opened at build if any.
    pub(crate) fn with_spool(config: Config, spool: Option<SpoolState>) -> Shared<E> {
        Shared {
            buffer: Buffer::new(&config),
            ledger: Ledger::new(),
            spool,
            config,
            prefix: process_prefix(),
            state: Mutex::new(State {
                staging: Staging::default(),
                carry: None,
                staging_disk: None,
                scratch: Vec::new(),
                encoding: None,
                batches: VecDeque::new(),
                attempt_running: false,
                last_empty: None,
                failures: 0,
                rng: random_seed(),
                last_summary: None,
                summary_seen: (0, 0),
                settled: false,
            }),
            final_report: Mutex::new(None),
            tokens: AtomicU64::new(1),
            owner: AtomicU64::new(0),
        }
    }

    /// A token for a new incarnation, greater than every earlier one.
    pub(crate) fn new_token(&self) -> u64 {
        self.tokens.fetch_add(1, Ordering::SeqCst)
    }

    /// Makes `token` the owner of the state, unless a later incarnation
    /// already claimed it. The new owner's final flush is still to come.
    pub(crate) fn claim(&self, token: u64) -> bool {
        let mut st = self.state.lock();
        if token <= self.owner.load(Ordering::SeqCst) {
            return false;
        }
        self.owner.store(token, Ordering::SeqCst);
        st.settled = false;
        true
    }

    /// Whether `token` still owns the state.
    pub(crate) fn owns(&self, token: u64) -> bool {
        self.owner.load(Ordering::SeqCst) == token
    }

    /// A snapshot of the ledger. Takes no lock the batcher holds while delivering.
    pub(crate) fn snapshot(&self) -> LedgerSnapshot {
        self.ledger.snapshot(self.buffer.len() as u64, self.buffer.taken())
    }

    pub(crate) fn final_report(&self) -> Option<FlushReport> {
        self.final_report.lock().clone()
    }

    fn publish(&self, st: &State) {
        self.ledger.set_in_flight(st.in_flight());
    }

    /// Events waiting for the batcher: queued, and with a spool, spooled.
    fn backlog(&self) -> u64 {
        match &self.spool {
            None => self.buffer.len() as u64,
            Some(spool) => {
                let queued = if spool.takes_queued() { self.buffer.len() as u64 } else { 0 };
                queued + self.ledger.spool().spooled.load(Ordering::Relaxed)
            }
        }
    }

    /// Whether a batch's worth is waiting.
    fn holds_full_batch(&self) -> bool {
        self.buffer.holds_full_batch() || self.backlog() >= self.config.max_batch_events as u64
    }
}

impl<E> Shared<E> {
    /// Called by each incarnation before anything else: settles what the
    /// previous one left half done.
    pub(crate) fn recover(&self, clock: &dyn Clock, restarted: bool) {
        if restarted {
            self.ledger.restarted();
        }
        let now = clock.now();
        let mut st = self.state.lock();
        if let Some(seq) = st.encoding.take() {
            let msg = format!("serializing the event with seq {seq} panicked; the event is dropped (reason `encode`)");
            log::error!(target: TARGET, "{msg}");
            self.ledger.batcher_drop(DropReason::Encode, 1);
            self.ledger.set_last_error("panic", msg);
        }
        if st.attempt_running {
            st.attempt_running = false;
            if let Some(key) = st.batches.front().map(|f| f.batch.idempotency_key().to_owned()) {
                let msg = format!("the batcher died while delivering batch {key}; the batch is kept and retried");
                log::error!(target: TARGET, "{msg}");
                // The actor's exit reason (with the panic message) may have
                // been recorded already; keep that.
                if !self.ledger.last_error_is("panic") {
                    self.ledger.set_last_error("panic", msg);
                }
                self.schedule_retry(&mut st, now, None);
            }
        }
        self.publish(&st);
    }

    /// Logs a summary line at most every `summary_interval`, and only when
    /// drops or failures happened since the last one.
    fn summarize(&self, st: &mut State, now: Instant) {
        let last = *st.last_summary.get_or_insert(now);
        if now < later(last, self.config.summary_interval) {
            return;
        }
        st.last_summary = Some(now);
        let trouble = self.ledger.trouble();
        if trouble != st.summary_seen {
            st.summary_seen = trouble;
            let snap = self.snapshot();
            let last_error = snap.last_error.as_ref().map(|e| format!("{}: {}", e.kind, e.message));
            log::warn!(target: TARGET, "event pipeline: {snap}; last error: {}", last_error.as_deref().unwrap_or("none"));
        }
    }

    /// Builds the report of a drain from the ledger before it.
    fn report(&self, before: &LedgerSnapshot, start: Instant, clock: &dyn Clock) -> FlushReport {
        FlushReport::between(before, self.snapshot(), clock.now().saturating_duration_since(start))
    }
}
