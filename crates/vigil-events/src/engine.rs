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
use crate::encode::{Staging, encode_record, framed_len, split};
use crate::flush::FlushReport;
use crate::ledger::{DropReason, Ledger, LedgerSnapshot};
use vigil_core::BoxError;

use crate::sink::{Batch, Delivery, Sink};

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
}

#[derive(Debug)]
struct State {
    staging: Staging,
    /// An encoded record that did not fit the previous batch.
    carry: Option<(u64, Vec<u8>)>,
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
    pub(crate) fn new(config: Config) -> Shared<E> {
        Shared {
            buffer: Buffer::new(&config),
            ledger: Ledger::new(),
            config,
            prefix: process_prefix(),
            state: Mutex::new(State {
                staging: Staging::default(),
                carry: None,
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

    fn backoff(&self, st: &mut State) -> Duration {
        let exp = st.failures.saturating_sub(1).min(31);
        let base = self.config.retry_backoff_min.saturating_mul(1 << exp).min(self.config.retry_backoff_max);
        // "Equal jitter": somewhere in [base/2, base].
        let half = base / 2;
        let span = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).saturating_add(1);
        half + Duration::from_nanos(st.next_random() % span)
    }

    /// Drops the front batch, counting its events under `reason`.
    fn drop_front(&self, st: &mut State, reason: DropReason) {
        if let Some(f) = st.batches.pop_front() {
            self.ledger.batcher_drop(reason, f.batch.len() as u64);
            log::debug!(target: TARGET, "batch {} ({} events) dropped: {reason}", f.batch.idempotency_key(), f.batch.len());
        }
        self.publish(st);
    }

    /// Looks at the front batch: expires it if too old, else says when it is due.
    fn front(&self, st: &mut State, now: Instant, draining: bool) -> Front {
        loop {
            let Some(f) = st.batches.front() else { return Front::None };
            let expires = later(f.created, self.config.max_batch_age);
            if now >= expires {
                self.drop_front(st, DropReason::Expired);
                continue;
            }
            let at = if draining && !f.tried_in_drain { f.retry_after_until.unwrap_or(now) } else { f.next_attempt };
            return if at <= now { Front::Due } else { Front::Wait(at.min(expires)) };
        }
    }

    /// Delivers the front batch once and applies the outcome.
    /// Nothing happens, and the sink's answer is ignored, when `token` does
    /// not own the state (before or after the sink ran).
    fn attempt(
        &self,
        sink: &mut dyn Sink,
        clock: &dyn Clock,
        budget: Option<Duration>,
        token: u64,
    ) -> Result<(), BoxError> {
        let (batch, retry) = {
            let mut st = self.state.lock();
            if !self.owns(token) {
                return Ok(());
            }
            let Some(f) = st.batches.front_mut() else { return Ok(()) };
            f.tried_in_drain = true;
            let out = (Arc::clone(&f.batch), f.attempts > 0);
            st.attempt_running = true;
            out
        };
        self.ledger.attempt(retry);
        let result = sink.deliver(&batch, budget);
        let now = clock.now();
        let mut st = self.state.lock();
        if !self.owns(token) {
            // Abandoned meanwhile: the state belongs to another incarnation
            // (or the finalizer), which has accounted for this batch.
            return Ok(());
        }
        st.attempt_running = false;
        match st.batches.front() {
            Some(f) if Arc::ptr_eq(&f.batch, &batch) => {}
            _ => return Ok(()),
        }
        let out = self.apply(&mut st, &batch, result, now);
        self.publish(&st);
        out
    }

    fn apply(&self, st: &mut State, batch: &Batch, result: Delivery, now: Instant) -> Result<(), BoxError> {
        let key = batch.idempotency_key();
        match result {
            Delivery::Delivered => {
                st.batches.pop_front();
                st.failures = 0;
                self.ledger.delivered(batch.len() as u64);
                log::trace!(target: TARGET, "batch {key} delivered ({} events)", batch.len());
            }
            Delivery::Retryable { error, retry_after } => {
                log::debug!(target: TARGET, "batch {key}: retryable failure: {error}");
                self.ledger.set_last_error("retryable", error.to_string());
                self.schedule_retry(st, now, retry_after);
            }
            Delivery::TooLarge { error } => {
                self.ledger.set_last_error("too_large", error.to_string());
                if batch.len() >= 2 {
                    let Some(f) = st.batches.pop_front() else { return Ok(()) };
                    let halves = split(self.prefix, self.config.framing(), &f.batch, &f.spans);
                    log::debug!(target: TARGET, "batch {key} too large ({} bytes): split in halves", batch.body().len());
                    for (b, spans) in halves.into_iter().rev() {
                        st.batches.push_front(InFlight {
                            batch: Arc::new(b),
                            spans,
                            created: f.created,
                            attempts: 0,
                            next_attempt: now,
                            retry_after_until: None,
                            tried_in_drain: false,
                        });
                    }
                    self.ledger.split();
                } else {
                    self.drop_front(st, DropReason::TooLarge);
                }
            }
            Delivery::Rejected { error } => {
                log::debug!(target: TARGET, "batch {key} rejected: {error}");
                self.ledger.set_last_error("rejected", error.to_string());
                self.drop_front(st, DropReason::Rejected);
            }
            Delivery::PartiallyRejected { rejected, error } => {
                let rejected = rejected.min(batch.len() as u64);
                log::debug!(target: TARGET, "batch {key}: {rejected} of {} events rejected: {error}", batch.len());
                st.batches.pop_front();
                st.failures = 0;
                self.ledger.delivered(batch.len() as u64 - rejected);
                self.ledger.batcher_drop(DropReason::Rejected, rejected);
                self.ledger.set_last_error("rejected", error.to_string());
            }
            Delivery::Fatal { error } => {
                // DEBUG: the batcher's restart line (WARN, from its
                // supervisor) already names this error; one failure, one WARN.
                log::debug!(target: TARGET, "batch {key}: fatal sink failure, the batcher restarts with a fresh sink: {error}");
                self.ledger.set_last_error("fatal", error.to_string());
                self.schedule_retry(st, now, None);
                return Err(error);
            }
        }
        Ok(())
    }

    /// Keeps the front batch for another attempt after a backoff, or drops it
    /// as expired when that attempt would come too late.
    fn schedule_retry(&self, st: &mut State, now: Instant, retry_after: Option<Duration>) {
        st.failures = st.failures.saturating_add(1);
        let delay = self.backoff(st).max(retry_after.unwrap_or_default());
        let max_age = self.config.max_batch_age;
        let Some(f) = st.batches.front_mut() else { return };
        f.attempts += 1;
        f.retry_after_until = retry_after.map(|d| later(now, d));
        f.next_attempt = later(now, delay);
        if f.next_attempt >= later(f.created, max_age) {
            self.drop_front(st, DropReason::Expired);
        }
    }

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

impl<E: Serialize> Shared<E> {
    /// Moves events from the buffer into a new batch at the back of the
    /// in-flight queue, popping at most `budget` events.
    fn assemble(&self, st: &mut State, budget: &mut u64, now: Instant) {
        let cfg = &self.config;
        // Emitters may wake the batcher again once a batch's worth is queued
        // anew. Not re-armed while a retry is pending, so a full buffer does
        // not turn into a stream of wake-ups.
        self.buffer.rearm();
        if let Some((seq, record)) = st.carry.take() {
            st.staging.push(seq, &record);
        }
        while st.staging.len() < cfg.max_batch_events && *budget > 0 {
            let Some(entry) = self.buffer.pop() else { break };
            *budget -= 1;
            st.encoding = Some(entry.seq);
            self.publish(st);
            let mut scratch = std::mem::take(&mut st.scratch);
            scratch.clear();
            let result = encode_record(cfg.framing(), &mut scratch, entry.seq, entry.ts_ms, &entry.event);
            st.encoding = None;
            match result {
                Err(e) => {
                    let msg = format!("event with seq {} failed to serialize: {e}", entry.seq);
                    log::debug!(target: TARGET, "{msg}");
                    self.ledger.set_last_error("encode", msg);
                    self.ledger.batcher_drop(DropReason::Encode, 1);
                }
                Ok(()) => {
                    self.buffer.observe_record(scratch.len());
                    if framed_len(cfg.framing(), 1, scratch.len()) > cfg.max_batch_bytes {
                        log::debug!(target: TARGET, "event with seq {} is {} bytes encoded, over max_batch_bytes", entry.seq, scratch.len());
                        self.ledger.batcher_drop(DropReason::TooLarge, 1);
                    } else if !st.staging.fits(cfg.framing(), scratch.len(), cfg.max_batch_bytes) {
                        st.carry = Some((entry.seq, scratch.clone()));
                        st.scratch = scratch;
                        break;
                    } else {
                        st.staging.push(entry.seq, &scratch);
                    }
                }
            }
            st.scratch = scratch;
        }
        if !st.staging.is_empty() {
            let (batch, spans) = st.staging.take(self.prefix, cfg.framing());
            st.batches.push_back(InFlight {
                batch: Arc::new(batch),
                spans,
                created: now,
                attempts: 0,
                next_attempt: now,
                retry_after_until: None,
                tried_in_drain: false,
            });
        }
        if self.buffer.len() == 0 && st.staged() == 0 {
            st.last_empty = Some(now);
        }
        self.publish(st);
    }

    /// Does whatever is due: retries a batch whose backoff is over, ships a
    /// batch when a full one is queued or the oldest queued event may have
    /// waited `max_delay`. Returns when to call again.
    ///
    /// One step pops at most what was queued when it began (plus one batch),
    /// so the actor gets back to its mailbox regularly under load; it then
    /// returns `now`. It also returns `now` as soon as `stop()` is true or
    /// `token` no longer owns the state.
    ///
    /// # Errors
    ///
    /// A fatal delivery; the batch is kept and the actor must fail.
    pub(crate) fn step(
        &self,
        sink: &mut dyn Sink,
        clock: &dyn Clock,
        stop: &dyn Fn() -> bool,
        token: u64,
    ) -> Result<Instant, BoxError> {
        let max_delay = self.config.max_delay;
        let mut budget = (self.buffer.len() as u64).saturating_add(self.config.max_batch_events as u64);
        loop {
            let now = clock.now();
            if stop() || !self.owns(token) {
                return Ok(now);
            }
            let mut st = self.state.lock();
            self.summarize(&mut st, now);
            match self.front(&mut st, now, false) {
                Front::Wait(at) => return Ok(at),
                Front::Due => {
                    drop(st);
                    self.attempt(sink, clock, self.config.delivery_timeout, token)?;
                    continue;
                }
                Front::None => {}
            }
            if self.buffer.len() == 0 && st.staged() == 0 {
                st.last_empty = Some(now);
                return Ok(later(now, max_delay));
            }
            // Never having seen the buffer empty, the batcher cannot tell how
            // long events have waited: they are due.
            let due_at = st.last_empty.map(|t| later(t, max_delay));
            let due = self.buffer.holds_full_batch() || due_at.is_none_or(|at| now >= at);
            if let (false, Some(at)) = (due, due_at) {
                return Ok(at);
            }
            if budget == 0 {
                return Ok(now);
            }
            self.assemble(&mut st, &mut budget, now);
        }
    }

    /// Delivers what is queued and in flight until done, the deadline or a
    /// stop request (`until`).
    ///
    /// Events queued after the drain began are taken too while the drain is
    /// at it, but it does not wait for them. The first attempt of each batch
    /// skips the batcher's own backoff (not the receiver's retry-after); the
    /// sink gets what is left of the time as its budget. Between attempts,
    /// and every [`STOP_POLL`] while it waits, it checks the stop request and that
    /// `token` still owns the state, and ends with [`DrainEnd::Stopped`]
    /// otherwise.
    fn drain(&self, sink: &mut dyn Sink, clock: &dyn Clock, until: Until<'_>, token: u64) -> DrainEnd {
        let (deadline, stop) = until;
        let mut target = self.buffer.len() as u64;
        self.state.lock().batches.iter_mut().for_each(|b| b.tried_in_drain = false);
        loop {
            if stop() || !self.owns(token) {
                return DrainEnd::Stopped;
            }
            let now = clock.now();
            let mut st = self.state.lock();
            match self.front(&mut st, now, true) {
                Front::Wait(at) => {
                    if at >= deadline {
                        return DrainEnd::Deadline;
                    }
                    drop(st);
                    clock.sleep(at.saturating_duration_since(now).min(STOP_POLL));
                    continue;
                }
                Front::Due => {
                    drop(st);
                    if now >= deadline {
                        return DrainEnd::Deadline;
                    }
                    let left = deadline - now;
                    let budget = self.config.delivery_timeout.map_or(left, |t| t.min(left));
                    if let Err(e) = self.attempt(sink, clock, Some(budget), token) {
                        return DrainEnd::Fatal(e);
                    }
                    continue;
                }
                Front::None => {}
            }
            if st.staged() == 0 && (target == 0 || self.buffer.len() == 0) {
                if self.buffer.len() == 0 {
                    st.last_empty = Some(now);
                }
                return DrainEnd::Complete;
            }
            if now >= deadline {
                return DrainEnd::Deadline;
            }
            self.assemble(&mut st, &mut target, now);
        }
    }

    /// Flushes until `deadline`: [`drain`](Shared::drain) and its report.
    pub(crate) fn flush(
        &self,
        sink: &mut dyn Sink,
        clock: &dyn Clock,
        deadline: Instant,
        stop: &dyn Fn() -> bool,
        token: u64,
    ) -> (FlushReport, DrainEnd) {
        let start = clock.now();
        let before = self.snapshot();
        let end = self.drain(sink, clock, (deadline, stop), token);
        (self.report(&before, start, clock), end)
    }

    /// The final flush, when the batcher stops: delivers what it can within
    /// `budget`, then settles the pipeline (see [`conclude`](Shared::conclude)).
    /// Without a sink (it could not be built) nothing is delivered.
    ///
    /// Returns `None`, having changed nothing, when `token` no longer owns
    /// the state: an abandoned incarnation that came back.
    pub(crate) fn final_flush(
        &self,
        sink: Option<&mut dyn Sink>,
        clock: &dyn Clock,
        budget: Duration,
        token: u64,
    ) -> Option<FlushReport> {
        let start = clock.now();
        let before = self.snapshot();
        let end = match sink {
            Some(sink) => self.drain(sink, clock, (later(start, budget), &|| false), token),
            None => DrainEnd::Deadline,
        };
        let outcome = match &end {
            DrainEnd::Complete => "complete",
            DrainEnd::Deadline => "budget exhausted",
            DrainEnd::Stopped => "superseded",
            DrainEnd::Fatal(e) => {
                log::warn!(target: TARGET, "fatal sink failure during the final flush: {e}");
                "sink failed"
            }
        };
        let mut st = self.state.lock();
        if !self.owns(token) {
            return None;
        }
        Some(self.conclude(&mut st, &before, start, clock, outcome))
    }

    /// Settles the pipeline after its batcher stopped for good or was
    /// abandoned, unless the batcher's own final flush did: takes the state
    /// over (so an abandoned incarnation that comes back leaves it alone) and
    /// concludes without a sink. Returns the report when it concluded.
    pub(crate) fn settle(&self, clock: &dyn Clock) -> Option<FlushReport> {
        let start = clock.now();
        let before = self.snapshot();
        let mut st = self.state.lock();
        self.owner.store(self.new_token(), Ordering::SeqCst);
        if st.settled {
            return None;
        }
        Some(self.conclude(&mut st, &before, start, clock, "no batcher running"))
    }

    /// The end of a final flush: what was not delivered stays pending — the
    /// batcher may be started again (a supervisor restarting a group, say) —
    /// unless the buffer is closed: then nothing will deliver it any more,
    /// and it is dropped with the reason `shutdown`. Logs the tally and keeps
    /// the report.
    fn conclude(
        &self,
        st: &mut State,
        before: &LedgerSnapshot,
        start: Instant,
        clock: &dyn Clock,
        outcome: &str,
    ) -> FlushReport {
        if self.buffer.is_closed() {
            let mut left = st.in_flight() - u64::from(st.encoding.is_some());
            st.staging = Staging::default();
            st.carry = None;
            st.batches.clear();
            while self.buffer.pop().is_some() {
                left += 1;
            }
            self.ledger.batcher_drop(DropReason::Shutdown, left);
            self.publish(st);
        }
        let report = self.report(before, start, clock);
        if report.pending > 0 || report.ledger.dropped.total() > 0 {
            log::warn!(target: TARGET, "event pipeline stopped ({outcome}): {report}");
        } else {
            log::info!(target: TARGET, "event pipeline stopped ({outcome}): {report}");
        }
        *self.final_report.lock() = Some(report.clone());
        st.settled = true;
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::manual::ManualClock;
    use crate::config::OverflowPolicy;
    use crate::sink::Encoding;
    use serde_json::{Value, json};
    use std::collections::BTreeSet;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    /// What the scripted sink does on its next call.
    #[derive(Debug, Clone)]
    enum Act {
        Deliver,
        Retry(Option<Duration>),
        TooLarge,
        /// TooLarge when the batch holds more than this many events.
        MaxEvents(usize),
        Reject,
        /// Accepted, but this many of the batch's records refused.
        PartlyReject(u64),
        Fatal,
        Panic,
        /// Takes this long (on the manual clock), then delivers.
        Slow(Duration),
    }

    #[derive(Debug)]
    struct Script {
        clock: Arc<ManualClock>,
        acts: VecDeque<Act>,
        default: Act,
        delivered: Vec<Batch>,
        budgets: Vec<Option<Duration>>,
        calls: usize,
    }

    impl Script {
        fn new(clock: &Arc<ManualClock>, acts: impl IntoIterator<Item = Act>) -> Script {
            Script {
                clock: Arc::clone(clock),
                acts: acts.into_iter().collect(),
                default: Act::Deliver,
                delivered: Vec::new(),
                budgets: Vec::new(),
                calls: 0,
            }
        }
    }

    impl Sink for Script {
        fn deliver(&mut self, batch: &Batch, budget: Option<Duration>) -> Delivery {
            self.calls += 1;
            self.budgets.push(budget);
            let act = self.acts.pop_front().unwrap_or_else(|| self.default.clone());
            let err = || -> BoxError { "scripted failure".into() };
            match act {
                Act::Deliver => {
                    self.delivered.push(batch.clone());
                    Delivery::Delivered
                }
                Act::Slow(d) => {
                    self.clock.advance(d);
                    self.delivered.push(batch.clone());
                    Delivery::Delivered
                }
                Act::Retry(retry_after) => Delivery::Retryable { error: err(), retry_after },
                Act::TooLarge => Delivery::TooLarge { error: err() },
                Act::MaxEvents(n) if batch.len() > n => Delivery::TooLarge { error: err() },
                Act::MaxEvents(_) => {
                    self.delivered.push(batch.clone());
                    Delivery::Delivered
                }
                Act::Reject => Delivery::Rejected { error: err() },
                Act::PartlyReject(rejected) => Delivery::PartiallyRejected { rejected, error: err() },
                Act::Fatal => Delivery::Fatal { error: err() },
                Act::Panic => panic!("scripted sink panic"),
            }
        }
    }

    /// Keeps the scripted panics out of the test output; others still print.
    fn quiet_panics() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let msg = info.payload().downcast_ref::<&str>().copied().unwrap_or("");
                if msg != "scripted sink panic" && msg != "serializer bomb" {
                    previous(info);
                }
            }));
        });
    }

    /// The token the tests act with: nobody else claims the state.
    const T: u64 = 0;

    fn shared(config: Config) -> Shared<Value> {
        config.validate().unwrap();
        let s = Shared::new(config);
        s.state.lock().rng = 42;
        s
    }

    fn small() -> Config {
        Config::default()
            .capacity(100)
            .max_batch_events(10)
            .max_delay(Duration::from_secs(1))
            .retry_backoff_min(Duration::from_millis(100))
            .retry_backoff_max(Duration::from_secs(10))
            .max_batch_age(Duration::from_secs(60))
    }

    /// Emits `n` events `{"i": k}` and returns the seqs they got, read back
    /// from the records the sink received.
    fn emit(s: &Shared<Value>, range: Range<u64>) {
        for i in range {
            s.buffer.push(json!({ "i": i }), &s.ledger).unwrap();
        }
    }

    fn ids(batches: &[Batch]) -> Vec<u64> {
        let mut out = Vec::new();
        for b in batches {
            for line in b.body().split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
                let v: Value = serde_json::from_slice(line).unwrap();
                out.push(v["event"]["i"].as_u64().unwrap());
            }
        }
        out
    }

    fn balanced(s: &Shared<Value>) -> LedgerSnapshot {
        let snap = s.snapshot();
        assert!(snap.is_balanced(), "ledger out of balance: {snap:?}");
        snap
    }

    #[test]
    fn waits_for_max_delay_then_ships_a_partial_batch() {
        let clock = Arc::new(ManualClock::new());
        let s = shared(small());
        let mut sink = Script::new(&clock, []);
        let t0 = clock.now();
        assert_eq!(s.step(&mut sink, &clock, &|| false, T).unwrap(), t0 + Duration::from_secs(1));
        emit(&s, 0..3);
        clock.advance(Duration::from_millis(400));
        // Not due yet: the queue was empty at t0.
        assert_eq!(s.step(&mut sink, &clock, &|| false, T).unwrap(), t0 + Duration::from_secs(1));
        assert_eq!(sink.calls, 0);
        clock.advance(Duration::from_millis(600));
        s.step(&mut sink, &clock, &|| false, T).unwrap();
        assert_eq!(ids(&sink.delivered), vec![0, 1, 2]);
        let snap = balanced(&s);
        assert_eq!((snap.delivered, snap.batches, snap.pending), (3, 1, 0));
    }

    #[test]
    fn full_batches_ship_at_once_and_respect_max_events() {
        let clock = Arc::new(ManualClock::new());
        let s = shared(small());
        let mut sink = Script::new(&clock, []);
        s.step(&mut sink, &clock, &|| false, T).unwrap();
        emit(&s, 0..25);
        s.step(&mut sink, &clock, &|| false, T).unwrap();
        // Two full batches go; the remaining 5 wait for max_delay.
        assert_eq!(sink.delivered.iter().map(Batch::len).collect::<Vec<_>>(), vec![10, 10]);
        assert_eq!(balanced(&s).queued, 5);
        clock.advance(Duration::from_secs(1));
        s.step(&mut sink, &clock, &|| false, T).unwrap();
        assert_eq!(ids(&sink.delivered), (0..25).collect::<Vec<_>>());
        assert_eq!(balanced(&s).delivered, 25);
    }

    #[test]
    fn batches_respect_max_bytes_and_carry_the_overflowing_record() {
        let clock = Arc::new(ManualClock::new());
        // Each record is ~45 bytes; 100 bytes hold two with their newlines.
        let s = shared(small().max_batch_bytes(100));
        let mut sink = Script::new(&clock, []);
        emit(&s, 0..5);
        clock.advance(Duration::from_secs(2));
        s.step(&mut sink, &clock, &|| false, T).unwrap();
        for b in &sink.delivered {
            assert!(b.body().len() <= 100, "{} bytes", b.body().len());
        }
        assert_eq!(sink.delivered.iter().map(Batch::len).collect::<Vec<_>>(), vec![2, 2, 1]);
        assert_eq!(ids(&sink.delivered), vec![0, 1, 2, 3, 4]);
        balanced(&s);
    }

    #[test]
    fn a_record_larger_than_a_batch_is_dropped_as_too_large() {
        let clock = Arc::new(ManualClock::new());
        let s = shared(small().max_batch_bytes(60));
        let mut sink = Script::new(&clock, []);
        s.buffer.push(json!({"i": 0}), &s.ledger).unwrap();
        s.buffer.push(json!({"i": 1, "pad": "x".repeat(100)}), &s.ledger).unwrap();
        s.buffer.push(json!({"i": 2}), &s.ledger).unwrap();
        clock.advance(Duration::from_secs(2));
        s.step(&mut sink, &clock, &|| false, T).unwrap();
        assert_eq!(ids(&sink.delivered), vec![0, 2]);
        let snap = balanced(&s);
        assert_eq!((snap.delivered, snap.dropped.too_large), (2, 1));
    }

    #[test]
    fn unserializable_events_are_dropped_and_the_rest_delivered() {
        use std::collections::BTreeMap;
        let clock = Arc::new(ManualClock::new());
        let s: Shared<BTreeMap<Vec<u8>, u8>> = Shared::new(small());
        let mut sink = Script::new(&clock, []);
        s.buffer.push(BTreeMap::new(), &s.ledger).unwrap();
        s.buffer.push(BTreeMap::from([(vec![1], 1)]), &s.ledger).unwrap();
        s.buffer.push(BTreeMap::new(), &s.ledger).unwrap();
        clock.advance(Duration::from_secs(2));
        s.step(&mut sink, &clock, &|| false, T).unwrap();
        let snap = s.snapshot();
        assert!(snap.is_balanced(), "{snap:?}");
        assert_eq!((snap.delivered, snap.dropped.encode), (2, 1));
        assert_eq!(snap.last_error.unwrap().kind, "encode");
        assert_eq!(sink.delivered[0].len(), 2);
    }

    #[test]
    fn retryable_backs_off_exponentially_with_jitter_and_keeps_the_key() {
        let clock = Arc::new(ManualClock::new());
        let s = shared(small());
        let mut sink = Script::new(&clock, [Act::Retry(None), Act::Retry(None), Act::Retry(None)]);
        emit(&s, 0..3);
        clock.advance(Duration::from_secs(1));
        let mut delays = Vec::new();
        let mut keys = BTreeSet::new();
        for _ in 0..3 {
            let t = clock.now();
            let next = s.step(&mut sink, &clock, &|| false, T).unwrap();
            delays.push(next - t);
            keys.insert(s.state.lock().batches.front().unwrap().batch.idempotency_key().to_owned());
            // Waking early does nothing.
            assert_eq!(s.step(&mut sink, &clock, &|| false, T).unwrap(), next);
            clock.advance(next - t);
        }
        for (i, d) in delays.iter().enumerate() {
            let base = Duration::from_millis(100) * (1 << i);
            assert!(*d >= base / 2 && *d <= base, "attempt {i}: {d:?} outside [{:?}, {base:?}]", base / 2);
        }
        assert_eq!(keys.len(), 1, "the key is stable across retries");
        s.step(&mut sink, &clock, &|| false, T).unwrap();
        assert_eq!(ids(&sink.delivered), vec![0, 1, 2]);
        assert_eq!(sink.delivered[0].idempotency_key(), keys.first().unwrap());
        let snap = balanced(&s);
        assert_eq!((snap.attempts, snap.retries, snap.batches), (4, 3, 1));
        assert_eq!(snap.last_error.unwrap().kind, "retryable");
    }

    #[test]
    fn retry_after_is_a_floor_for_the_backoff() {
        let clock = Arc::new(ManualClock::new());
        let s = shared(small());
        let mut sink = Script::new(&clock, [Act::Retry(Some(Duration::from_secs(7)))]);
        emit(&s, 0..1);
        clock.advance(Duration::from_secs(1));
        let t = clock.now();
        assert_eq!(s.step(&mut sink, &clock, &|| false, T).unwrap(), t + Duration::from_secs(7));
        clock.advance(Duration::from_millis(6999));
        s.step(&mut sink, &clock, &|| false, T).unwrap();
        assert_eq!(sink.calls, 1);
        clock.advance(Duration::from_millis(1));
        s.step(&mut sink, &clock, &|| false, T).unwrap();
        assert_eq!(sink.delivered.len(), 1);
        balanced(&s);
    }

    #[test]
    fn backoff_is_capped() {
        let s = shared(small().retry_backoff_max(Duration::from_millis(400)));
        let mut st = s.state.lock();
        st.failures = 40;
        for _ in 0..100 {
            let d = s.backoff(&mut st);
            assert!(d >= Duration::from_millis(200) && d <= Duration::from_millis(400), "{d:?}");
        }
    }

    #[test]
    fn a_batch_failing_past_max_age_expires() {
        let clock = Arc::new(ManualClock::new());
        let s = shared(small().max_batch_age(Duration::from_secs(2)).retry_backoff_max(Duration::from_millis(800)));
        let mut sink = Script::new(&clock, []);
        sink.default = Act::Retry(None);
        emit(&s, 0..4);
        clock.advance(Duration::from_secs(1));
        let mut guard = 0;
        while s.snapshot().dropped.expired == 0 {
            let next = s.step(&mut sink, &clock, &|| false, T).unwrap();
            clock.advance(next.saturating_duration_since(clock.now()));
            guard += 1;
            assert!(guard < 100, "never expired");
        }
        let snap = balanced(&s);
        assert_eq!((snap.dropped.expired, snap.delivered, snap.pending), (4, 0, 0));
        // It never attempted after its age ran out.
        assert!(sink.calls >= 2);
    }

    #[test]
    fn too_large_splits_until_it_fits() {
        let clock = Arc::new(ManualClock::new());
        let s = shared(small());
        let mut sink = Script::new(&clock, []);
        sink.default = Act::MaxEvents(3);
        emit(&s, 0..10);
        s.step(&mut sink, &clock, &|| false, T).unwrap();
        assert_eq!(ids(&sink.delivered), (0..10).collect::<Vec<_>>());
        assert!(sink.delivered.iter().all(|b| b.len() <= 3));
        let keys: BTreeSet<_> = sink.delivered.iter().map(|b| b.idempotency_key().to_owned()).collect();
        assert_eq!(keys.len(), sink.delivered.len(), "halves get keys of their own");
        let snap = balanced(&s);
        assert_eq!(snap.delivered, 10);
        assert!(snap.splits >= 3);
        assert_eq!(snap.retries, 0, "a split is not a retry");
    }

    #[test]
    fn a_single_event_too_large_for_the_receiver_is_dropped() {
        let clock = Arc::new(ManualClock::new());
        let s = shared(small());
        let mut sink = Script::new(&clock, []);
        sink.default = Act::TooLarge;
        emit(&s, 0..4);
        clock.advance(Duration::from_secs(1));
        s.step(&mut sink, &clock, &|| false, T).unwrap();
        let snap = balanced(&s);
        assert_eq!((snap.dropped.too_large, snap.splits, snap.delivered), (4, 3, 0));
    }

    #[test]
    fn rejected_batches_are_dropped_and_the_next_one_goes() {
        let clock = Arc::new(ManualClock::new());
        let s = shared(small());
        let mut sink = Script::new(&clock, [Act::Reject]);
        emit(&s, 0..15);
        s.step(&mut sink, &clock, &|| false, T).unwrap();
        clock.advance(Duration::from_secs(1));
        s.step(&mut sink, &clock, &|| false, T).unwrap();
        assert_eq!(ids(&sink.delivered), (10..15).collect::<Vec<_>>());
        let snap = balanced(&s);
        assert_eq!((snap.dropped.rejected, snap.delivered), (10, 5));
        assert_eq!(snap.last_error.unwrap().kind, "rejected");
    }

    #[test]
    fn a_partial_rejection_counts_both_parts_exactly() {
        let clock = Arc::new(ManualClock::new());
        let s = shared(small());
        // 3 of the first batch refused; the second receiver claims more
        // refusals than the batch holds, which counts as all of them.
        let mut sink = Script::new(&clock, [Act::PartlyReject(3), Act::PartlyReject(99)]);
        emit(&s, 0..15);
        s.step(&mut sink, &clock, &|| false, T).unwrap();
        clock.advance(Duration::from_secs(1));
        s.step(&mut sink, &clock, &|| false, T).unwrap();
        assert_eq!(sink.calls, 2, "neither batch is retried");
        let snap = balanced(&s);
        assert_eq!((snap.delivered, snap.dropped.rejected, snap.in_flight), (7, 8, 0));
        assert_eq!(snap.batches, 2);
        assert_eq!(snap.last_error.unwrap().kind, "rejected");
    }

    #[test]
    fn fatal_keeps_the_batch_for_the_next_incarnation() {
        let clock = Arc::new(ManualClock::new());
        let s = shared(small());
        emit(&s, 0..5);
        clock.advance(Duration::from_secs(1));
        let mut first = Script::new(&clock, [Act::Fatal]);
        assert!(s.step(&mut first, &clock, &|| false, T).is_err());
        let key = s.state.lock().batches.front().unwrap().batch.idempotency_key().to_owned();
        assert_eq!(balanced(&s).in_flight, 5);
        // A fresh sink, as the restarted actor builds it.
        s.recover(&clock, true);
        let mut second = Script::new(&clock, []);
        let next = s.step(&mut second, &clock, &|| false, T).unwrap();
        assert_eq!(second.calls, 0, "the retry waits out the backoff");
        clock.advance(next - clock.now());
        s.step(&mut second, &clock, &|| false, T).unwrap();
        assert_eq!(second.delivered[0].idempotency_key(), key);
        assert_eq!(ids(&second.delivered), (0..5).collect::<Vec<_>>());
        let snap = balanced(&s);
        assert_eq!((snap.restarts, snap.retries, snap.delivered), (1, 1, 5));
    }

    #[test]
    fn a_panicking_sink_loses_nothing() {
        quiet_panics();
        let clock = Arc::new(ManualClock::new());
        let s = shared(small());
        emit(&s, 0..12);
        let mut sink = Script::new(&clock, [Act::Panic]);
        let died = catch_unwind(AssertUnwindSafe(|| s.step(&mut sink, &clock, &|| false, T)));
        assert!(died.is_err());
        let snap = balanced(&s);
        assert_eq!((snap.in_flight, snap.queued), (10, 2));
        s.recover(&clock, true);
        let mut sink = Script::new(&clock, []);
        for _ in 0..5 {
            clock.advance(Duration::from_secs(1));
            s.step(&mut sink, &clock, &|| false, T).unwrap();
        }
        assert_eq!(ids(&sink.delivered), (0..12).collect::<Vec<_>>());
        let snap = balanced(&s);
        assert_eq!((snap.delivered, snap.restarts), (12, 1));
        assert_eq!(snap.last_error.unwrap().kind, "panic");
    }

    #[derive(Debug)]
    struct Bomb(u64);

    impl Serialize for Bomb {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            if self.0 == 3 {
                panic!("serializer bomb");
            }
            s.serialize_u64(self.0)
        }
    }

    #[test]
    fn a_panicking_serializer_drops_only_its_event() {
        quiet_panics();
        let clock = Arc::new(ManualClock::new());
        let s: Shared<Bomb> = Shared::new(small());
        for i in 0..6 {
            s.buffer.push(Bomb(i), &s.ledger).unwrap();
        }
        clock.advance(Duration::from_secs(1));
        let mut sink = Script::new(&clock, []);
        assert!(catch_unwind(AssertUnwindSafe(|| s.step(&mut sink, &clock, &|| false, T))).is_err());
        let snap = s.snapshot();
        assert!(snap.is_balanced(), "{snap:?}");
        assert_eq!(snap.in_flight, 4, "three staged plus the one being encoded");
        s.recover(&clock, true);
        s.step(&mut sink, &clock, &|| false, T).unwrap();
        let events: Vec<u64> = sink.delivered[0]
            .body()
            .split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice::<Value>(l).unwrap()["event"].as_u64().unwrap())
            .collect();
        assert_eq!(events, vec![0, 1, 2, 4, 5]);
        let snap = s.snapshot();
        assert!(snap.is_balanced(), "{snap:?}");
        assert_eq!((snap.delivered, snap.dropped.encode), (5, 1));
    }

    #[test]
    fn flush_delivers_everything_and_skips_own_backoff() {
        let clock = Arc::new(ManualClock::new());
        let s = shared(small());
        let mut sink = Script::new(&clock, [Act::Retry(None)]);
        emit(&s, 0..25);
        s.step(&mut sink, &clock, &|| false, T).unwrap();
        assert_eq!(sink.calls, 1);
        let deadline = clock.now() + Duration::from_secs(5);
        let (report, end) = s.flush(&mut sink, &clock, deadline, &|| false, T);
        assert!(matches!(end, DrainEnd::Complete), "{end:?}");
        assert_eq!(report.delivered, 25);
        assert_eq!(report.pending, 0);
        assert_eq!(ids(&sink.delivered), (0..25).collect::<Vec<_>>());
        assert!(sink.budgets[1..].iter().all(|b| b.unwrap() <= Duration::from_secs(5)));
        balanced(&s);
    }

    #[test]
    fn flush_honours_retry_after_and_reports_pending_at_the_deadline() {
        let clock = Arc::new(ManualClock::new());
        let s = shared(small());
        let mut sink = Script::new(&clock, [Act::Retry(Some(Duration::from_secs(30)))]);
        emit(&s, 0..15);
        s.step(&mut sink, &clock, &|| false, T).unwrap();
        let (report, end) = s.flush(&mut sink, &clock, clock.now() + Duration::from_secs(5), &|| false, T);
        assert!(matches!(end, DrainEnd::Deadline), "{end:?}");
        assert_eq!(sink.calls, 1, "no retry before retry-after");
        assert_eq!((report.delivered, report.pending), (0, 15));
        assert!(report.ledger.is_balanced());
    }

    #[test]
    fn flush_gives_the_sink_the_remaining_budget() {
        let clock = Arc::new(ManualClock::new());
        let s = shared(small().max_batch_events(5));
        let mut sink = Script::new(&clock, [Act::Slow(Duration::from_secs(3)), Act::Slow(Duration::from_secs(3))]);
        emit(&s, 0..15);
        let (report, end) = s.flush(&mut sink, &clock, clock.now() + Duration::from_secs(4), &|| false, T);
        assert!(matches!(end, DrainEnd::Deadline));
        assert_eq!(sink.budgets, vec![Some(Duration::from_secs(4)), Some(Duration::from_secs(1))]);
        assert_eq!((report.delivered, report.pending), (10, 5));
        balanced(&s);
    }

    #[test]
    fn shutdown_drops_what_the_budget_cannot_deliver() {
        let clock = Arc::new(ManualClock::new());
        let s = shared(small());
        let mut sink = Script::new(&clock, []);
        sink.default = Act::Retry(Some(Duration::from_secs(30)));
        emit(&s, 0..25);
        s.buffer.close();
        let report = s.final_flush(Some(&mut sink), &clock, Duration::from_secs(5), T).unwrap();
        assert_eq!(report.dropped.shutdown, 25);
        assert_eq!(report.pending, 0);
        assert_eq!(s.buffer.push(json!(1), &s.ledger), Err(crate::Dropped::Closed(json!(1))));
        let snap = balanced(&s);
        assert_eq!(snap.dropped.shutdown, 26);
        assert_eq!(s.final_report().unwrap().dropped.shutdown, 25);
    }

    #[test]
    fn a_final_flush_without_close_leaves_the_rest_pending() {
        let clock = Arc::new(ManualClock::new());
        let s = shared(small());
        let mut sink = Script::new(&clock, []);
        sink.default = Act::Retry(Some(Duration::from_secs(30)));
        emit(&s, 0..25);
        let report = s.final_flush(Some(&mut sink), &clock, Duration::from_secs(5), T).unwrap();
        assert_eq!((report.pending, report.delivered, report.dropped.total()), (25, 0, 0));
        assert_eq!(s.final_report().unwrap().pending, 25);
        // A later incarnation still delivers them.
        sink.default = Act::Deliver;
        clock.advance(Duration::from_secs(30));
        s.step(&mut sink, &clock, &|| false, T).unwrap();
        clock.advance(Duration::from_secs(1));
        s.step(&mut sink, &clock, &|| false, T).unwrap();
        assert_eq!(ids(&sink.delivered), (0..25).collect::<Vec<_>>());
        balanced(&s);
    }

    #[test]
    fn step_returns_at_once_when_asked_to_stop() {
        let clock = Arc::new(ManualClock::new());
        let s = shared(small());
        let mut sink = Script::new(&clock, []);
        emit(&s, 0..30);
        assert_eq!(s.step(&mut sink, &clock, &|| true, T).unwrap(), clock.now());
        assert_eq!(sink.calls, 0);
        // Asked between batches: the one in flight finishes, no more start.
        let calls = std::cell::Cell::new(0);
        let stop = || {
            calls.set(calls.get() + 1);
            calls.get() > 2
        };
        s.step(&mut sink, &clock, &stop, T).unwrap();
        assert_eq!(sink.calls, 1);
        balanced(&s);
    }

    #[test]
    fn shutdown_delivers_everything_when_it_can() {
        let clock = Arc::new(ManualClock::new());
        let s = shared(small().encoding(Encoding::JsonArray));
        let mut sink = Script::new(&clock, []);
        emit(&s, 0..33);
        s.buffer.close();
        let report = s.final_flush(Some(&mut sink), &clock, Duration::from_secs(5), T).unwrap();
        assert_eq!((report.delivered, report.dropped.total(), report.pending), (33, 0, 0));
        let n: usize =
            sink.delivered.iter().map(|b| serde_json::from_slice::<Vec<Value>>(b.body()).unwrap().len()).sum();
        assert_eq!(n, 33);
        balanced(&s);
    }

    #[test]
    fn drop_oldest_policy_with_a_stuck_sink_counts_exactly() {
        let clock = Arc::new(ManualClock::new());
        let s = shared(small().capacity(20).overflow(OverflowPolicy::DropOldest));
        let mut sink = Script::new(&clock, []);
        sink.default = Act::Retry(None);
        emit(&s, 0..10);
        s.step(&mut sink, &clock, &|| false, T).unwrap();
        emit(&s, 10..60);
        let snap = balanced(&s);
        assert_eq!((snap.queued, snap.in_flight, snap.dropped.oldest_evicted), (20, 10, 30));
        s.buffer.close();
        let report = s.final_flush(None, &clock, Duration::from_secs(1), T).unwrap();
        assert_eq!(report.dropped.shutdown, 30);
        balanced(&s);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Emit(u8),
            Step,
            Advance(u16),
            Sink(u8),
            Panic,
            Flush,
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                3 => (1u8..40).prop_map(Op::Emit),
                3 => Just(Op::Step),
                2 => (1u16..3000).prop_map(Op::Advance),
                3 => (0u8..8).prop_map(Op::Sink),
                1 => Just(Op::Panic),
                1 => Just(Op::Flush),
            ]
        }

        fn act(n: u8) -> Act {
            match n {
                0..=2 => Act::Deliver,
                3 => Act::Retry(None),
                4 => Act::Retry(Some(Duration::from_millis(500))),
                5 => Act::MaxEvents(3),
                6 => Act::Reject,
                _ => Act::Fatal,
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]
            #[test]
            fn ledger_balances_at_every_quiescent_point(
                ops in proptest::collection::vec(op(), 1..60),
                drop_oldest in any::<bool>(),
                seed in any::<u64>(),
            ) {
                quiet_panics();
                let clock = Arc::new(ManualClock::new());
                let policy = if drop_oldest { OverflowPolicy::DropOldest } else { OverflowPolicy::DropNewest };
                let s = shared(small().capacity(50).overflow(policy).max_batch_age(Duration::from_secs(20)));
                s.state.lock().rng = seed | 1;
                let mut sink = Script::new(&clock, []);
                let mut next_id = 0u64;
                let mut refused = BTreeSet::new();
                for op in ops {
                    match op {
                        Op::Emit(n) => for _ in 0..n {
                            if s.buffer.push(json!({ "i": next_id }), &s.ledger).is_err() {
                                refused.insert(next_id);
                            }
                            next_id += 1;
                        },
                        Op::Step => {
                            if s.step(&mut sink, &clock, &|| false, T).is_err() {
                                s.recover(&clock, true);
                            }
                        }
                        Op::Advance(ms) => clock.advance(Duration::from_millis(u64::from(ms))),
                        Op::Sink(n) => sink.acts.push_back(act(n)),
                        Op::Panic => {
                            sink.acts.push_front(Act::Panic);
                            if catch_unwind(AssertUnwindSafe(|| s.step(&mut sink, &clock, &|| false, T))).is_err() {
                                s.recover(&clock, true);
                            } else {
                                // Nothing was due; the panic stays scripted for later.
                                if matches!(sink.acts.front(), Some(Act::Panic)) {
                                    sink.acts.pop_front();
                                }
                            }
                        }
                        Op::Flush => {
                            let deadline = clock.now() + Duration::from_secs(2);
                            if let (_, DrainEnd::Fatal(_)) = s.flush(&mut sink, &clock, deadline, &|| false, T) {
                                s.recover(&clock, true);
                            }
                        }
                    }
                    let snap = s.snapshot();
                    prop_assert!(snap.is_balanced(), "{:?}", snap);
                    prop_assert_eq!(snap.accepted, next_id);
                }
                // Delivered events are exactly-once per id, never a refused one.
                let delivered = ids(&sink.delivered);
                let unique: BTreeSet<u64> = delivered.iter().copied().collect();
                prop_assert_eq!(unique.len(), delivered.len());
                prop_assert!(unique.is_disjoint(&refused));
                prop_assert_eq!(s.snapshot().delivered, delivered.len() as u64);
                // The final flush settles everything.
                sink.acts.clear();
                s.buffer.close();
                let report = s.final_flush(Some(&mut sink), &clock, Duration::from_secs(600), T).unwrap();
                let snap = s.snapshot();
                prop_assert!(snap.is_balanced(), "{:?}", snap);
                prop_assert_eq!(snap.pending, 0);
                prop_assert_eq!(report.pending, 0);
            }
        }
    }
}
