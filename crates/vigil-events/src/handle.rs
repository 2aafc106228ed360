//! The handle: flush, close and the ledger, from any thread.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_core::{Addr, CallError, SupervisorRef};

use crate::batcher::BatcherMsg;
use crate::clock::later;
use crate::engine::Shared;
use crate::flush::{FlushError, FlushReport};
use crate::ledger::LedgerSnapshot;
use crate::pipeline::BATCHER;

/// How long a flush waits for the batcher's answer past its deadline.
const REPLY_GRACE: Duration = Duration::from_millis(500);

/// How long [`EventsHandle::wake`] waits for the supervisor's answer.
const WAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the handle needs from the shared state, without the event type.
pub(crate) trait PipelineState: Send + Sync + 'static {
    fn snapshot(&self) -> LedgerSnapshot;
    fn close(&self);
    fn is_closed(&self) -> bool;
    fn final_report(&self) -> Option<FlushReport>;
    fn durable_seq(&self) -> Option<u64>;
    fn spool_id(&self) -> Option<&str>;
}

impl<E: Send + 'static> PipelineState for Shared<E> {
    fn snapshot(&self) -> LedgerSnapshot {
        Shared::snapshot(self)
    }

    fn close(&self) {
        self.buffer.close();
    }

    fn is_closed(&self) -> bool {
        self.buffer.is_closed()
    }

    fn final_report(&self) -> Option<FlushReport> {
        Shared::final_report(self)
    }

    fn durable_seq(&self) -> Option<u64> {
        self.spool.as_ref().and_then(|s| s.status.durable_seq())
    }

    fn spool_id(&self) -> Option<&str> {
        self.spool.as_ref().map(|s| s.id.as_str())
    }
}

/// Flushes, closes and reads the ledger of a pipeline, from any thread.
///
/// # About threads and cloning
///
/// A clone talks to the same batcher. [`ledger`](EventsHandle::ledger) reads
/// atomic counters and never waits for the batcher, even while its sink
/// hangs. [`flush`](EventsHandle::flush) sends the batcher a message and waits
/// for its answer until the deadline (plus half a second for the answer to
/// arrive); if the batcher is stuck in a slow delivery it answers with
/// [`FlushError::Timeout`] and the ledger as it stood.
#[derive(Clone)]
pub struct EventsHandle {
    addr: Addr<BatcherMsg>,
    state: Arc<dyn PipelineState>,
    /// The pipeline's own supervisor, to end the batcher's restart backoff.
    supervisor: SupervisorRef,
}

impl fmt::Debug for EventsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventsHandle").field("ledger", &self.state.snapshot()).finish()
    }
}

impl EventsHandle {
    pub(crate) fn new(
        addr: Addr<BatcherMsg>,
        state: Arc<dyn PipelineState>,
        supervisor: SupervisorRef,
    ) -> EventsHandle {
        EventsHandle { addr, state, supervisor: supervisor.timeout(WAKE_TIMEOUT) }
    }

    /// A snapshot of the ledger. Never blocks on the batcher.
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
    /// emitter.emit(serde_json::json!({"n": 1}))?;
    /// handle.flush(Duration::from_secs(5))?;
    /// assert_eq!(handle.ledger().delivered, 1);
    /// system.shutdown()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn ledger(&self) -> LedgerSnapshot {
        self.state.snapshot()
    }

    /// Delivers everything queued when the call is made, and the batch in
    /// flight, within `timeout`. The batch in flight and the rest share the
    /// time; the sink gets what is left of it as its budget. The receiver's
    /// retry-after is honoured; the batcher's own backoff is skipped for the
    /// first attempt of each batch. While the sink factory is still running,
    /// the flush waits for the sink within the same time.
    ///
    /// A flush yields to shutdown: when the batcher is asked to stop, the
    /// flush ends with [`FlushError::Closed`] between two delivery
    /// attempts (or at once while it waits for a retry or for the sink), and
    /// the final flush takes over. A delivery attempt already running is
    /// not interrupted; if the batcher is abandoned in it, the flush ends
    /// with [`FlushError::Closed`] when the pipeline has been settled
    /// without it.
    ///
    /// # Errors
    ///
    /// - [`FlushError::Timeout`]: the deadline passed with events pending.
    /// - [`FlushError::SinkFailed`]: the sink failed fatally (or panicked);
    ///   the batcher is restarting and keeps the events.
    /// - [`FlushError::Closed`]: the batcher has stopped for good, or
    ///   began to stop while the flush ran.
    ///
    /// Each carries the report of what was done.
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
    /// for n in 0..10 {
    ///     emitter.emit(serde_json::json!({"n": n}))?;
    /// }
    /// let report = handle.flush(Duration::from_secs(5))?;
    /// // The batcher may have delivered some before the flush began: the
    /// // report counts what the flush did, the ledger counts everything.
    /// assert_eq!(report.pending, 0);
    /// assert_eq!(report.ledger.delivered, 10);
    /// system.shutdown()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn flush(&self, timeout: Duration) -> Result<FlushReport, FlushError> {
        let deadline = later(Instant::now(), timeout);
        self.flush_deadline(deadline)
    }

    /// [`flush`](EventsHandle::flush) with a deadline instead of a timeout.
    ///
    /// # Errors
    ///
    /// As [`flush`](EventsHandle::flush).
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
    /// # use std::time::Instant;
    /// let config = Config::default().capacity(64).max_batch_events(16);
    /// let (emitter, events, handle) = EventPipeline::builder(config)
    ///     .sink(|| Ok::<_, std::io::Error>(Null))
    ///     .build()?;
    /// let system = vigil_core::Supervisor::builder().child(events).start()?;
    /// emitter.emit(serde_json::json!({"n": 1}))?;
    /// let deadline = Instant::now() + Duration::from_secs(5);
    /// handle.flush_deadline(deadline)?;
    /// system.shutdown()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn flush_deadline(&self, deadline: Instant) -> Result<FlushReport, FlushError> {
        let start = Instant::now();
        let before = self.state.snapshot();
        let wait = deadline.saturating_duration_since(start).saturating_add(REPLY_GRACE);
        let answer = self.addr.call(|reply| BatcherMsg::Flush { deadline, reply }, wait);
        let report = || FlushReport::between(&before, self.state.snapshot(), start.elapsed());
        match answer {
            Ok(result) => result,
            // A flush from the batcher's own thread (a sink that flushes)
            // cannot be answered: the batcher is busy with that very call.
            Err(CallError::Timeout | CallError::Deadlock { .. }) => Err(FlushError::Timeout(Box::new(report()))),
            Err(CallError::Dropped) => Err(FlushError::SinkFailed(Box::new(report()))),
            Err(CallError::Closed) => Err(FlushError::Closed(Box::new(report()))),
        }
    }

    /// Closes the pipeline for good: every later `emit` fails with
    /// [`Dropped::Closed`](crate::Dropped::Closed) (counted under
    /// `shutdown`), and the batcher's final flush, when it stops, drops what
    /// it cannot deliver within its budget with the reason `shutdown` instead
    /// of leaving it pending.
    ///
    /// Call it just before shutting the supervision tree down.
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
    /// emitter.emit(serde_json::json!({"n": 1}))?;
    /// handle.close(); // then shut the tree down: the final flush delivers or drops
    /// assert!(handle.is_closed());
    /// system.shutdown()?;
    /// let report = handle.final_report().expect("the pipeline stopped");
    /// assert_eq!(report.pending, 0);
    /// assert_eq!(handle.ledger().delivered + handle.ledger().dropped.total(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn close(&self) {
        self.state.close();
    }

    /// Tells the pipeline that what made its sink fail may be fixed (a trust
    /// file was rewritten, say), so it should try again now rather than at
    /// the end of its restart backoff.
    ///
    /// If the batcher is waiting out its restart backoff, its supervisor
    /// restarts it at once (through
    /// [`SupervisorRef::restart_child`]), which builds a fresh sink; the
    /// backoff's attempt count is kept, so a sink that still fails waits as
    /// long as it would have. If the batcher is running, it is nudged to
    /// deliver what is queued. After [`close`](EventsHandle::close), or once
    /// the pipeline has stopped, this does nothing.
    ///
    /// Blocks for at most a second, waiting for the supervisor's answer; it
    /// never waits for a delivery. Returns whether a waiting batcher was
    /// restarted.
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
    /// let (emitter, events, handle) = EventPipeline::builder(Config::default())
    ///     .sink(|| Ok::<_, std::io::Error>(Null))
    ///     .build()?;
    /// let system = vigil_core::Supervisor::builder().child(events).start()?;
    /// emitter.emit(serde_json::json!({"n": 1}))?;
    /// // The batcher is running, not waiting out a backoff: it is only nudged.
    /// assert!(!handle.wake());
    /// handle.flush(Duration::from_secs(5))?;
    /// system.shutdown()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn wake(&self) -> bool {
        if self.is_closed() {
            return false;
        }
        match self.supervisor.restart_child(BATCHER) {
            Ok(_) => {
                log::info!(target: "vigil::events", "batcher restarted ahead of its backoff: its sink may work now");
                true
            }
            Err(_) => {
                // Running (or gone): a full mailbox means it is busy anyway.
                let _ = self.addr.try_tell(BatcherMsg::Nudge);
                false
            }
        }
    }

    /// Whether [`close`](EventsHandle::close) was called.
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
    /// assert!(!handle.is_closed());
    /// handle.close();
    /// assert!(handle.is_closed() && emitter.is_closed());
    /// assert!(emitter.emit(serde_json::json!({"late": true})).unwrap_err().is_closed());
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_closed(&self) -> bool {
        self.state.is_closed()
    }

    /// The report of the pipeline's last final flush, once its supervisor has
    /// stopped. `None` before that.
    ///
    /// Normally the batcher's own final flush writes it. When the batcher
    /// could not (it was waiting out a restart backoff, or its sink did not
    /// return within the shutdown timeout and the supervisor abandoned its
    /// thread), the pipeline's finalizer settles it without a sink: the
    /// report then shows nothing delivered, and what was pending is dropped
    /// with the reason `shutdown` if [`close`](EventsHandle::close) was
    /// called, or stays pending otherwise. An abandoned batcher whose sink
    /// returns later changes neither the report nor the ledger.
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
    /// assert!(handle.final_report().is_none()); // still running
    /// emitter.emit(serde_json::json!({"n": 1}))?;
    /// system.shutdown()?;
    /// let report = handle.final_report().expect("set when the pipeline stopped");
    /// // Delivered before shutdown or by the final flush, but never lost.
    /// assert_eq!(report.ledger.delivered + report.ledger.pending, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn final_report(&self) -> Option<FlushReport> {
        self.state.final_report()
    }

    /// With a spool ([`Config::spool`](crate::Config::spool)): the highest
    /// sequence number durable on disk under the spool's sync policy. Every
    /// event with a sequence number at or below it survives a crash of the
    /// process (and, unless the policy is [`SyncPolicy::Os`](crate::SyncPolicy::Os),
    /// of the machine) and is delivered by a later run if this one cannot.
    /// `None` without a spool, or before anything was made durable.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use vigil_core::Supervisor;
    /// use vigil_events::{Batch, Config, Delivery, EventPipeline, Sink, SpoolConfig, SyncPolicy};
    /// # struct Null;
    /// # impl Sink for Null {
    /// #     fn deliver(&mut self, _: &Batch, _: Option<Duration>) -> Delivery { Delivery::Delivered }
    /// # }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = std::env::temp_dir().join(format!("vigil-doc-durable-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let config = Config::default().spool(SpoolConfig::new(&dir).sync(SyncPolicy::EveryWrite));
    /// let (emitter, events, handle) = EventPipeline::builder(config).sink(|| Ok::<_, std::io::Error>(Null)).build()?;
    /// assert_eq!(handle.durable_seq(), None);
    /// let system = Supervisor::builder().child(events).start()?;
    /// emitter.emit(1u32)?;
    /// handle.flush(Duration::from_secs(10))?;
    /// assert_eq!(handle.durable_seq(), Some(0), "the first event of a new spool is number 0");
    /// system.shutdown()?;
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn durable_seq(&self) -> Option<u64> {
        self.state.durable_seq()
    }

    /// With a spool: its stable id, the prefix of every record's `id`
    /// (`<spool id>-<seq>`). `None` without a spool. The id is kept in the
    /// spool's directory, so it stays the same across restarts of the
    /// process.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use vigil_events::{Batch, Config, Delivery, EventPipeline, Sink, SpoolConfig};
    /// # struct Null;
    /// # impl Sink for Null {
    /// #     fn deliver(&mut self, _: &Batch, _: Option<Duration>) -> Delivery { Delivery::Delivered }
    /// # }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = std::env::temp_dir().join(format!("vigil-doc-spool-id-{}", std::process::id()));
    /// # let _ = std::fs::remove_dir_all(&dir);
    /// let spooled = || Config::default().spool(SpoolConfig::new(&dir));
    /// let (_, _, handle) = EventPipeline::builder::<u32>(spooled()).sink(|| Ok::<_, std::io::Error>(Null)).build()?;
    /// let id = handle.spool_id().expect("a spool").to_owned();
    /// drop(handle); // as a process that ends
    /// let (_, _, again) = EventPipeline::builder::<u32>(spooled()).sink(|| Ok::<_, std::io::Error>(Null)).build()?;
    /// assert_eq!(again.spool_id(), Some(id.as_str()));
    ///
    /// let (_, _, plain) = EventPipeline::builder::<u32>(Config::default()).sink(|| Ok::<_, std::io::Error>(Null)).build()?;
    /// assert_eq!(plain.spool_id(), None);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn spool_id(&self) -> Option<&str> {
        self.state.spool_id()
    }
}
