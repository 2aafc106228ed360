//! The batcher actor: drives the state machine on its own thread.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use vigil_core::{Actor, BoxError, Context, ExitReason, Reply};

use crate::clock::SystemClock;
use crate::engine::{DrainEnd, Shared};
use crate::flush::{FlushError, FlushReport};
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

/// One incarnation of the batcher. Everything worth keeping is in `shared`.
pub(crate) struct Batcher<E> {
    shared: Arc<Shared<E>>,
    /// The sink, or why the factory could not build it (taken when reported).
    sink: Result<Box<dyn Sink>, Option<BoxError>>,
    /// When this incarnation first saw its stop request.
    stop_seen: Option<Instant>,
}

impl<E> fmt::Debug for Batcher<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batcher").field("sink", &self.sink.is_ok()).finish()
    }
}

impl<E: Serialize + Send + 'static> Batcher<E> {
    /// Builds an incarnation. A sink factory failure does not fail the start
    /// (a batcher that cannot start would fail its whole supervision tree's
    /// start): the incarnation starts, then fails at its first step with the
    /// factory's error, and the supervisor retries with its backoff.
    pub(crate) fn new(shared: Arc<Shared<E>>, factory: &SinkFactory) -> Batcher<E> {
        let sink = match factory() {
            Ok(sink) => Ok(sink),
            Err(e) => {
                shared.ledger.set_last_error("sink_factory", e.to_string());
                Err(Some(e))
            }
        };
        Batcher { shared, sink, stop_seen: None }
    }

    fn sink(&mut self) -> Result<&mut dyn Sink, BoxError> {
        match &mut self.sink {
            Ok(sink) => Ok(&mut **sink),
            Err(e) => Err(e.take().unwrap_or_else(|| "the sink could not be built".into())),
        }
    }

    fn run(&mut self, ctx: &mut Context<'_, BatcherMsg>) -> Result<(), BoxError> {
        let shared = Arc::clone(&self.shared);
        let sink = self.sink()?;
        let stop = || ctx.stop_requested();
        let next = shared.step(sink, &SystemClock, &stop)?;
        self.schedule(ctx, next);
        Ok(())
    }

    fn schedule(&mut self, ctx: &mut Context<'_, BatcherMsg>, next: Instant) {
        let now = Instant::now();
        if ctx.stop_requested() {
            self.stop_seen.get_or_insert(now);
        }
        ctx.set_receive_timeout(Some(next.saturating_duration_since(now)));
    }

    fn flush(&mut self, deadline: Instant, reply: Reply<Result<FlushReport, FlushError>>) -> Result<(), BoxError> {
        let shared = Arc::clone(&self.shared);
        let sink = match self.sink() {
            Ok(sink) => sink,
            Err(e) => {
                let report = FlushReport::between(&shared.snapshot(), shared.snapshot(), Duration::ZERO);
                let _ = reply.send(Err(FlushError::SinkFailed(Box::new(report))));
                return Err(e);
            }
        };
        let (report, end) = shared.flush(sink, &SystemClock, deadline);
        match end {
            DrainEnd::Complete => {
                let _ = reply.send(Ok(report));
            }
            DrainEnd::Deadline => {
                let _ = reply.send(Err(FlushError::Timeout(Box::new(report))));
            }
            DrainEnd::Fatal(e) => {
                let _ = reply.send(Err(FlushError::SinkFailed(Box::new(report))));
                return Err(e);
            }
        }
        Ok(())
    }
}

impl<E: Serialize + Send + 'static> Actor for Batcher<E> {
    type Msg = BatcherMsg;

    fn started(&mut self, ctx: &mut Context<'_, BatcherMsg>) -> Result<(), BoxError> {
        self.shared.recover(&SystemClock, ctx.incarnation() > 0);
        // Look at the buffer right away: a restart may have left work.
        ctx.set_receive_timeout(Some(Duration::ZERO));
        Ok(())
    }

    fn handle(&mut self, msg: BatcherMsg, ctx: &mut Context<'_, BatcherMsg>) -> Result<(), BoxError> {
        match msg {
            BatcherMsg::Nudge => self.run(ctx),
            BatcherMsg::Flush { deadline, reply } => {
                self.flush(deadline, reply)?;
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
        match reason {
            ExitReason::Normal | ExitReason::Shutdown => {
                let budget = self.shared.config.shutdown_timeout;
                let spent = self.stop_seen.map_or(Duration::ZERO, |t| t.elapsed());
                let shared = Arc::clone(&self.shared);
                let sink = self.sink.as_mut().ok().map(|s| &mut **s as &mut dyn Sink);
                shared.final_flush(sink, &SystemClock, budget.saturating_sub(spent));
            }
            ExitReason::Panicked { .. } => self.shared.ledger.set_last_error("panic", reason.to_string()),
            _ => {}
        }
    }
}
