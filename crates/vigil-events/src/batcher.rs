//! The batcher actor: drives the state machine on its own thread.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use parking_lot::Mutex;
use serde::Serialize;
use vigil_core::{Actor, Addr, BoxError, Context, ExitReason, Reply};

use crate::clock::{SystemClock, later};
use crate::engine::{DrainEnd, STOP_POLL, Shared};
use crate::flush::{FlushError, FlushReport};
use crate::ledger::LedgerSnapshot;
use crate::sink::Sink;

/// The batcher's messages.
pub(crate) enum BatcherMsg {
    /// An emitter saw a batch's worth queued.
    Nudge,
    /// Deliver what is queued and in flight by `deadline`.
    Flush { deadline: Instant, reply: Reply<Result<FlushReport, FlushError>> },
}

impl fmt::Debug for BatcherMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatcherMsg::Nudge => f.write_str("Nudge"),
            BatcherMsg::Flush { deadline, .. } => f.debug_struct("Flush").field("deadline", deadline).finish(),
        }
    }
}

pub(crate) type SinkFactory = Arc<dyn Fn() -> Result<Box<dyn Sink>, BoxError> + Send + Sync>;

/// A flush request the batcher is working on, parked where the pipeline's
/// finalizer can answer it should the batcher be abandoned meanwhile.
pub(crate) struct ParkedFlush {
    /// The incarnation working on it.
    token: u64,
    reply: Reply<Result<FlushReport, FlushError>>,
    before: LedgerSnapshot,
    start: Instant,
}

/// Shared by every incarnation of the batcher and the finalizer.
pub(crate) type FlushSlot = Arc<Mutex<Option<ParkedFlush>>>;

/// Answers a flush left parked by an abandoned batcher: the batcher is gone,
/// the final flush (or the finalizer) has taken over.
pub(crate) fn answer_parked(slot: &FlushSlot, now: LedgerSnapshot) {
    if let Some(parked) = slot.lock().take() {
        let report = FlushReport::between(&parked.before, now, parked.start.elapsed());
        let _ = parked.reply.send(Err(FlushError::Closed(Box::new(report))));
    }
}

/// An incarnation's sink.
enum SinkSlot {
    /// The factory runs on a thread of its own; its result arrives here.
    Building(Receiver<Result<Box<dyn Sink>, BoxError>>),
    Ready(Box<dyn Sink>),
    /// The factory failed (the error is taken when reported).
    Failed(Option<BoxError>),
}

/// One incarnation of the batcher. Everything worth keeping is in `shared`.
pub(crate) struct Batcher<E> {
    shared: Arc<Shared<E>>,
    factory: SinkFactory,
    parked: FlushSlot,
    /// This incarnation's claim on `shared`; see [`Shared::claim`].
    token: u64,
    sink: SinkSlot,
    /// When this incarnation first saw its stop request.
    stop_seen: Option<Instant>,
}

impl<E> fmt::Debug for Batcher<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sink = match self.sink {
            SinkSlot::Building(_) => "building",
            SinkSlot::Ready(_) => "ready",
            SinkSlot::Failed(_) => "failed",
        };
        f.debug_struct("Batcher").field("token", &self.token).field("sink", &sink).finish()
    }
}

impl<E: Serialize + Send + 'static> Batcher<E> {
    /// Builds an incarnation. It does not call the sink factory: `started`
    /// runs it on a thread of its own, so neither a slow nor a failing
    /// factory fails the start (a batcher that cannot start would fail its
    /// whole supervision tree's start). Until the sink is built, nothing is
    /// delivered, as in an outage; a factory error fails the incarnation at
    /// its next step, and the supervisor retries with its backoff.
    pub(crate) fn new(shared: Arc<Shared<E>>, factory: &SinkFactory, parked: &FlushSlot) -> Batcher<E> {
        let token = shared.new_token();
        Batcher {
            shared,
            factory: Arc::clone(factory),
            parked: Arc::clone(parked),
            token,
            sink: SinkSlot::Failed(None),
            stop_seen: None,
        }
    }

    /// Runs the sink factory on a thread of its own; the thread nudges the
    /// batcher when the sink is built, or drops it if the incarnation has gone.
    fn build(&self, addr: Addr<BatcherMsg>) -> SinkSlot {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let factory = Arc::clone(&self.factory);
        let spawned = std::thread::Builder::new().name("vigil-events-sink".to_owned()).spawn(move || {
            let built = catch_unwind(AssertUnwindSafe(|| factory())).unwrap_or_else(|payload| {
                let what = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(format!("the sink factory panicked: {what}").into())
            });
            if tx.send(built).is_ok() {
                // Full or closed: the batcher is busy or gone; it looks anyway.
                let _ = addr.try_tell(BatcherMsg::Nudge);
            }
        });
        match spawned {
            Ok(_) => SinkSlot::Building(rx),
            Err(e) => SinkSlot::Failed(Some(format!("cannot spawn a thread for the sink factory: {e}").into())),
        }
    }

    /// The sink, once built: `Ok(None)` while the factory still runs after
    /// waiting for it until `deadline` (or not at all), or until `stop()`.
    ///
    /// # Errors
    ///
    /// The factory's error, once.
    fn sink(&mut self, deadline: Option<Instant>, stop: &dyn Fn() -> bool) -> Result<Option<&mut dyn Sink>, BoxError> {
        if let SinkSlot::Building(rx) = &self.sink {
            let built = loop {
                let left = deadline.map_or(Duration::ZERO, |d| d.saturating_duration_since(Instant::now()));
                match rx.recv_timeout(left.min(STOP_POLL)) {
                    Ok(built) => break Some(built),
                    Err(RecvTimeoutError::Timeout) if left.is_zero() || stop() => break None,
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        break Some(Err("the sink factory's thread ended without an answer".into()));
                    }
                }
            };
            match built {
                None => return Ok(None),
                Some(Ok(sink)) => self.sink = SinkSlot::Ready(sink),
                Some(Err(e)) => {
                    self.shared.ledger.set_last_error("sink_factory", e.to_string());
                    self.sink = SinkSlot::Failed(Some(e));
                }
            }
        }
        match &mut self.sink {
            SinkSlot::Ready(sink) => Ok(Some(&mut **sink)),
            SinkSlot::Failed(e) => Err(e.take().unwrap_or_else(|| "the sink could not be built".into())),
            SinkSlot::Building(_) => Ok(None),
        }
    }

    fn run(&mut self, ctx: &mut Context<'_, BatcherMsg>) -> Result<(), BoxError> {
        if !self.shared.owns(self.token) {
            // Abandoned and superseded: leave the pipeline alone.
            ctx.stop();
            return Ok(());
        }
        let shared = Arc::clone(&self.shared);
        let (token, stopping) = (self.token, ctx.stop_requested());
        let Some(sink) = self.sink(None, &|| stopping)? else {
            // The factory's thread nudges the batcher once the sink is built.
            self.note_stop(ctx);
            ctx.set_receive_timeout(None);
            return Ok(());
        };
        // Polled between deliveries and while waiting: alive, for the
        // watchdog; only a call into the sink that does not return is a hang.
        let stop = || {
            ctx.heartbeat();
            ctx.stop_requested()
        };
        let next = shared.step(sink, &SystemClock, &stop, token)?;
        self.note_stop(ctx);
        ctx.set_receive_timeout(Some(next.saturating_duration_since(Instant::now())));
        Ok(())
    }

    fn note_stop(&mut self, ctx: &Context<'_, BatcherMsg>) {
        if ctx.stop_requested() {
            self.stop_seen.get_or_insert_with(Instant::now);
        }
    }

    /// Runs a flush request. The reply is parked meanwhile (see
    /// [`ParkedFlush`]); whoever takes it back answers.
    fn flush(
        &mut self,
        ctx: &Context<'_, BatcherMsg>,
        deadline: Instant,
        reply: Reply<Result<FlushReport, FlushError>>,
    ) -> Result<(), BoxError> {
        let shared = Arc::clone(&self.shared);
        let (token, parked) = (self.token, Arc::clone(&self.parked));
        let (start, before) = (Instant::now(), shared.snapshot());
        *parked.lock() = Some(ParkedFlush { token, reply, before: before.clone(), start });
        // Unless the finalizer answered it, this incarnation being abandoned.
        let answer = |result: Result<FlushReport, FlushError>| {
            let mut slot = parked.lock();
            if slot.as_ref().is_some_and(|p| p.token == token)
                && let Some(p) = slot.take()
            {
                let _ = p.reply.send(result);
            }
        };
        let stop = || {
            ctx.heartbeat();
            ctx.stop_requested() || !shared.owns(token)
        };
        let report = || Box::new(FlushReport::between(&before, shared.snapshot(), start.elapsed()));
        let sink = match self.sink(Some(deadline), &stop) {
            Ok(Some(sink)) => sink,
            // Still no sink: an outage, or the batcher is stopping.
            Ok(None) => {
                answer(Err(if stop() { FlushError::Closed(report()) } else { FlushError::Timeout(report()) }));
                return Ok(());
            }
            Err(e) => {
                answer(Err(FlushError::SinkFailed(report())));
                return Err(e);
            }
        };
        let (report, end) = shared.flush(sink, &SystemClock, deadline, &stop, token);
        let report = Box::new(report);
        match end {
            DrainEnd::Complete => answer(Ok(*report)),
            DrainEnd::Deadline => answer(Err(FlushError::Timeout(report))),
            // The final flush takes over.
            DrainEnd::Stopped => answer(Err(FlushError::Closed(report))),
            DrainEnd::Fatal(e) => {
                answer(Err(FlushError::SinkFailed(report)));
                return Err(e);
            }
        }
        Ok(())
    }
}

impl<E: Serialize + Send + 'static> Actor for Batcher<E> {
    type Msg = BatcherMsg;

    fn started(&mut self, ctx: &mut Context<'_, BatcherMsg>) -> Result<(), BoxError> {
        if !self.shared.claim(self.token) {
            return Err("a later incarnation of the batcher owns the pipeline".into());
        }
        self.shared.recover(&SystemClock, ctx.incarnation() > 0);
        self.sink = self.build(ctx.addr().clone());
        // Look at the buffer right away: a restart may have left work.
        ctx.set_receive_timeout(Some(Duration::ZERO));
        Ok(())
    }

    fn handle(&mut self, msg: BatcherMsg, ctx: &mut Context<'_, BatcherMsg>) -> Result<(), BoxError> {
        match msg {
            BatcherMsg::Nudge => self.run(ctx),
            BatcherMsg::Flush { deadline, reply } => {
                self.flush(ctx, deadline, reply)?;
                self.note_stop(ctx);
                // Pick up the regular schedule again.
                ctx.set_receive_timeout(Some(Duration::ZERO));
                Ok(())
            }
        }
    }

    fn timeout(&mut self, ctx: &mut Context<'_, BatcherMsg>) -> Result<(), BoxError> {
        self.run(ctx)
    }

    fn stopped(&mut self, reason: &ExitReason) {
        if !self.shared.owns(self.token) {
            return;
        }
        match reason {
            ExitReason::Normal | ExitReason::Shutdown => {
                let budget = self.shared.config.shutdown_timeout;
                let spent = self.stop_seen.map_or(Duration::ZERO, |t| t.elapsed());
                let deadline = later(Instant::now(), budget.saturating_sub(spent));
                let (shared, token) = (Arc::clone(&self.shared), self.token);
                // A sink still being built gets the budget to arrive.
                let sink = self.sink(Some(deadline), &|| false).ok().flatten();
                let left = deadline.saturating_duration_since(Instant::now());
                shared.final_flush(sink, &SystemClock, left, token);
            }
            ExitReason::Panicked { .. } => self.shared.ledger.set_last_error("panic", reason.to_string()),
            _ => {}
        }
    }
}
