//! The spool writer: moves events from the buffer to disk, off the request
//! threads, and what the batcher needs to read them back.
//!
//! With a spool, the buffer has a second consumer. The spool writer actor
//! (id `spool_writer`, in the pipeline's supervisor) pops events, encodes
//! each record's tail (`"ts":..,"event":..}`) and appends them to the spool
//! in one write, every [`POLL`] or sooner when emitters see a batch's worth
//! queued; it syncs them under the spool's policy. The batcher reads records
//! back in order, adds their head (`{"seq":N,"id":"<spool>-N",`) and
//! delivers them; every batch of records read from disk acknowledges them
//! when it is resolved, which moves the checkpoint.
//!
//! When a write fails (the disk is full, the directory vanished, EIO) or the
//! spool is at `max_bytes`, the writer hands the records it holds to the
//! batcher in memory and stops taking events; the batcher takes them from
//! the buffer itself (the memory path, as without a spool) and counts them
//! under `spool_unavailable` or `spool_full`. The writer tries the disk
//! again every [`RETRY`]; the first write that works ends the bypass.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use vigil_core::{Actor, BoxError, Context, ExitReason};
use vigil_spool::{Item, MAX_RECORD_BYTES, RECORD_OVERHEAD, SpoolError, SpoolReader, SpoolStatus, SpoolWriter};

use crate::clock::later;
use crate::encode::encode_tail;
use crate::engine::Shared;
use crate::ledger::{DropReason, Ledger};

const TARGET: &str = "vigil::events";

/// The spool writer's id in the pipeline's supervisor.
pub(crate) const WRITER: &str = "spool_writer";

/// How often the writer looks at the buffer at the latest. With the sync
/// interval it bounds the time from `emit` to durable.
pub(crate) const POLL: Duration = Duration::from_millis(10);

/// Events per write at most.
const CHUNK: usize = 1024;

/// How soon the writer tries the disk again after a failure.
pub(crate) const RETRY: Duration = Duration::from_secs(1);

/// Why events bypass the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bypass {
    /// The spool is at `max_bytes`.
    Full,
    /// The disk failed.
    Unavailable,
}

impl Bypass {
    fn of(e: &SpoolError) -> Bypass {
        match e {
            SpoolError::Full { .. } => Bypass::Full,
            _ => Bypass::Unavailable,
        }
    }

    /// Counts `n` events that went the memory path for this reason.
    pub(crate) fn count(self, ledger: &Ledger, n: u64) {
        let c = match self {
            Bypass::Full => &ledger.spool().full,
            Bypass::Unavailable => &ledger.spool().unavailable,
        };
        c.fetch_add(n, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct WriterState {
    writer: SpoolWriter,
    /// Writes not yet durable: (the number after the last record, records).
    unsynced: VecDeque<(u64, u64)>,
    /// While bypassing: when to try the disk again.
    retry_at: Option<Instant>,
    /// Whether the current trouble was logged.
    logged: Option<Bypass>,
}

/// Everything about the spool that outlives the actors.
pub(crate) struct SpoolState {
    pub(crate) id: String,
    pub(crate) status: SpoolStatus,
    writer: Mutex<WriterState>,
    pub(crate) reader: Mutex<SpoolReader>,
    /// `Some` while events bypass the disk: the batcher takes them from the buffer.
    bypass: Mutex<Option<Bypass>>,
    /// Record tails the writer took but could not write, in order.
    handoff: Mutex<VecDeque<(Bypass, Vec<u8>)>>,
    /// Wakes the batcher after a write.
    batcher: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// Whether a spool writer incarnation is running (it takes what is queued).
    running: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for SpoolState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolState").field("id", &self.id).field("bypass", &self.bypass()).finish_non_exhaustive()
    }
}

/// A record for the batcher: from disk (acknowledged when resolved) or from memory.
pub(crate) enum Taken {
    Disk { seq: u64, tail: Vec<u8> },
    Memory { why: Bypass, tail: Vec<u8> },
}

impl SpoolState {
    pub(crate) fn new(id: String, writer: SpoolWriter, reader: SpoolReader, status: SpoolStatus) -> SpoolState {
        SpoolState {
            id,
            status,
            writer: Mutex::new(WriterState { writer, unsynced: VecDeque::new(), retry_at: None, logged: None }),
            reader: Mutex::new(reader),
            bypass: Mutex::new(None),
            handoff: Mutex::new(VecDeque::new()),
            batcher: std::sync::OnceLock::new(),
            running: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub(crate) fn set_batcher_waker(&self, wake: Box<dyn Fn() + Send + Sync>) {
        let _ = self.batcher.set(wake);
    }

    /// Whether what is queued in the buffer will reach the batcher: a
    /// writer runs to spool it, or the batcher takes it itself (bypass).
    pub(crate) fn takes_queued(&self) -> bool {
        self.running.load(Ordering::Relaxed) || self.bypass().is_some()
    }

    /// Why events bypass the disk now, if they do.
    pub(crate) fn bypass(&self) -> Option<Bypass> {
        *self.bypass.lock()
    }

    /// The next record for the batcher from the disk or the hand-off, in
    /// that order; `None` when there is none now. A damaged run of records
    /// read back is counted under `corrupt` on the way.
    pub(crate) fn take(&self, ledger: &Ledger, from_disk: Option<bool>) -> Option<Taken> {
        if from_disk != Some(false) {
            let mut reader = self.reader.lock();
            loop {
                match reader.read_next() {
                    Ok(Some(Item::Record { seq, payload })) => {
                        ledger.spool().spooled.fetch_sub(1, Ordering::Relaxed);
                        return Some(Taken::Disk { seq, tail: payload });
                    }
                    Ok(Some(Item::Damaged { count })) => {
                        // Saturating: a miscount must not wrap the gauge.
                        let _ = ledger
                            .spool()
                            .spooled
                            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(count)));
                        ledger.batcher_drop(DropReason::Corrupt, count);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // The records stay counted as spooled; the next step tries again.
                        log::debug!(target: TARGET, "reading the spool back failed: {e}");
                        ledger.set_last_error("spool", e.to_string());
                        break;
                    }
                }
            }
            if from_disk == Some(true) {
                return None;
            }
        }
        let (why, tail) = self.handoff.lock().pop_front()?;
        ledger.spool().spooled.fetch_sub(1, Ordering::Relaxed);
        Some(Taken::Memory { why, tail })
    }

    /// Records in the hand-off, dropped at shutdown: they are not on disk.
    pub(crate) fn drain_handoff(&self, ledger: &Ledger) -> u64 {
        let n = std::mem::take(&mut *self.handoff.lock()).len() as u64;
        ledger.spool().spooled.fetch_sub(n, Ordering::Relaxed);
        n
    }

    /// Acknowledges every record numbered below `upto` with the lifetime
    /// counters; writes the checkpoint when due (always when `force`).
    pub(crate) fn ack(&self, upto: Option<u64>, counters: &crate::ledger::LedgerSnapshot, now: Instant, force: bool) {
        let mut map = std::collections::BTreeMap::new();
        map.insert("delivered".to_owned(), counters.delivered);
        for reason in DropReason::ALL {
            map.insert(format!("dropped.{reason}"), counters.dropped.get(reason));
        }
        let mut reader = self.reader.lock();
        let upto = upto.unwrap_or(0);
        if let Err(e) = reader.ack(upto, &map, now, force) {
            log::warn!(target: TARGET, "cannot write the spool's checkpoint (acknowledged records may be delivered again after a restart): {e}");
        }
    }

    /// Moves what is queued to disk (or, while the disk is unusable, to the
    /// batcher in memory), syncs under the policy, and returns when to look
    /// again. `all`: keep going until the buffer is empty (at shutdown).
    pub(crate) fn pump<E: Serialize>(&self, shared: &Shared<E>, now: Instant, all: bool) -> Instant {
        let ledger = &shared.ledger;
        let mut w = self.writer.lock();
        shared.buffer.rearm();
        let mut wrote = false;
        loop {
            if self.bypass().is_some() && w.retry_at.is_some_and(|at| now < at) {
                break;
            }
            let mut tails = take_tails(shared);
            if tails.is_empty() {
                break;
            }
            let n = tails.len();
            // What does not fit under max_bytes goes from memory, as `spool_full`.
            let mut room = self.status.room();
            let fit = tails
                .iter()
                .take_while(|t| {
                    let need = (t.len() + RECORD_OVERHEAD) as u64;
                    room = room.checked_sub(need).unwrap_or(u64::MAX);
                    room != u64::MAX
                })
                .count();
            let over = tails.split_off(fit);
            let mut trouble = None;
            if !tails.is_empty() {
                match w.writer.write(tails.iter().map(Vec::as_slice), now) {
                    Ok(seqs) => {
                        w.unsynced.push_back((seqs.end, seqs.end - seqs.start));
                        wrote = true;
                    }
                    Err(e) => {
                        let why = Bypass::of(&e);
                        self.handoff.lock().extend(tails.into_iter().map(|t| (why, t)));
                        trouble = Some(e);
                    }
                }
            }
            if trouble.is_none() && !over.is_empty() {
                trouble = Some(SpoolError::Full {
                    max_bytes: self.status.config().max_bytes_limit(),
                    used: self.status.used_bytes(),
                });
            }
            if !over.is_empty() {
                self.handoff.lock().extend(over.into_iter().map(|t| (Bypass::Full, t)));
            }
            match trouble {
                None => {
                    if self.bypass.lock().take().is_some() {
                        log::info!(target: TARGET, "spool {}: writing to disk again", self.status.config().dir().display());
                    }
                    w.retry_at = None;
                    w.logged = None;
                }
                Some(e) => {
                    let why = Bypass::of(&e);
                    *self.bypass.lock() = Some(why);
                    w.retry_at = Some(later(now, RETRY));
                    if w.logged != Some(why) {
                        w.logged = Some(why);
                        let name = match why {
                            Bypass::Full => "spool_full",
                            Bypass::Unavailable => "spool_unavailable",
                        };
                        log::warn!(target: TARGET, "{e}; events go from memory to the sink until the spool can be written again (counted as `{name}`)");
                    }
                    ledger.set_last_error("spool", e.to_string());
                    self.wake_batcher();
                    break;
                }
            }
            if !all && n < CHUNK {
                break;
            }
        }
        if let Err(e) = w.writer.maybe_sync(now) {
            log::warn!(target: TARGET, "{e}; written records stay readable but may not survive a power cut");
            ledger.set_last_error("spool", e.to_string());
        }
        if all && let Err(e) = w.writer.sync(now) {
            log::warn!(target: TARGET, "{e}");
        }
        let durable = self.status.durable_seq().map_or(0, |d| d + 1);
        let mut made_durable = 0;
        while w.unsynced.front().is_some_and(|&(end, _)| end <= durable) {
            made_durable += w.unsynced.pop_front().map_or(0, |(_, n)| n);
        }
        ledger.spool().durable.fetch_add(made_durable, Ordering::Relaxed);
        if wrote {
            self.wake_batcher();
        }
        let next = later(now, POLL);
        w.writer.sync_due().map_or(next, |at| at.min(next))
    }

    fn wake_batcher(&self) {
        if let Some(wake) = self.batcher.get() {
            wake();
        }
    }
}

/// Pops up to [`CHUNK`] events and encodes their record tails. An event
/// that cannot be encoded (or panics doing so) is dropped as `encode`; one
/// over [`MAX_RECORD_BYTES`] as `too_large`. Every event taken counts as
/// spooled until the batcher takes it.
fn take_tails<E: Serialize>(shared: &Shared<E>) -> Vec<Vec<u8>> {
    let ledger = &shared.ledger;
    let mut tails: Vec<Vec<u8>> = Vec::new();
    while tails.len() < CHUNK {
        let Some(entry) = shared.buffer.pop() else { break };
        ledger.spool().spooled.fetch_add(1, Ordering::Relaxed);
        let mut tail = Vec::new();
        let encoded = catch_unwind(AssertUnwindSafe(|| encode_tail(&mut tail, entry.ts_ms, &entry.event)));
        let seq = entry.seq;
        let dropped = match encoded {
            Ok(Ok(())) if tail.len() <= MAX_RECORD_BYTES => None,
            Ok(Ok(())) => Some((DropReason::TooLarge, format!("event with seq {seq} is {} bytes encoded", tail.len()))),
            Ok(Err(e)) => Some((DropReason::Encode, format!("event with seq {seq} failed to serialize: {e}"))),
            Err(_) => Some((DropReason::Encode, format!("serializing the event with seq {seq} panicked"))),
        };
        // Dropped here, in case the event's Drop panics.
        if catch_unwind(AssertUnwindSafe(move || drop(entry))).is_err() {
            log::debug!(target: TARGET, "an event's Drop panicked in the spool writer");
        }
        match dropped {
            None => tails.push(tail),
            Some((reason, msg)) => {
                ledger.spool().spooled.fetch_sub(1, Ordering::Relaxed);
                ledger.set_last_error(reason.as_str(), msg);
                ledger.batcher_drop(reason, 1);
            }
        }
    }
    tails
}

/// The spool writer actor: one incarnation after another pumps the buffer
/// into the spool. Its state is in [`SpoolState`]; a restart loses nothing
/// but the event being encoded when it died (serialization panics are
/// caught and counted under `encode`).
pub(crate) struct SpoolWriterActor<E> {
    pub(crate) shared: Arc<Shared<E>>,
}

impl<E> std::fmt::Debug for SpoolWriterActor<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpoolWriterActor")
    }
}

impl<E: Serialize + Send + 'static> SpoolWriterActor<E> {
    fn run(&mut self, ctx: &mut Context<'_, ()>) {
        let Some(spool) = &self.shared.spool else { return };
        let now = Instant::now();
        let next = spool.pump(&self.shared, now, false);
        ctx.set_receive_timeout(Some(next.saturating_duration_since(Instant::now())));
    }
}

impl<E: Serialize + Send + 'static> Actor for SpoolWriterActor<E> {
    type Msg = ();

    fn started(&mut self, ctx: &mut Context<'_, ()>) -> Result<(), BoxError> {
        if let Some(spool) = &self.shared.spool {
            spool.running.store(true, Ordering::Relaxed);
        }
        ctx.set_receive_timeout(Some(Duration::ZERO));
        Ok(())
    }

    fn handle(&mut self, (): (), ctx: &mut Context<'_, ()>) -> Result<(), BoxError> {
        self.run(ctx);
        Ok(())
    }

    fn timeout(&mut self, ctx: &mut Context<'_, ()>) -> Result<(), BoxError> {
        self.run(ctx);
        Ok(())
    }

    fn stopped(&mut self, reason: &ExitReason) {
        // Stopped before the batcher: what is queued goes to disk, synced,
        // for the next run to deliver whatever the final flush cannot.
        let Some(spool) = &self.shared.spool else { return };
        if matches!(reason, ExitReason::Normal | ExitReason::Shutdown) {
            spool.pump(&self.shared, Instant::now(), true);
        }
        spool.running.store(false, Ordering::Relaxed);
    }
}
