//! Putting a pipeline together: [`EventPipeline::builder`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use vigil_core::{Actor, Backoff, BoxError, ChildSpec, Context, ExitReason, Restart, Strategy, Supervisor};

use crate::batcher::{Batcher, BatcherMsg, FlushSlot, SinkFactory, answer_parked};
use crate::buffer::{Buffer, Emitter};
use crate::clock::SystemClock;
use crate::config::{Config, ConfigError};
use crate::engine::Shared;
use crate::handle::EventsHandle;
use crate::sink::Sink;

/// The batcher's mailbox: nudges (at most one outstanding per drain) and
/// flush requests.
const MAILBOX: usize = 64;

/// Time the supervisor grants on top of the final flush's own budget before it
/// abandons a batcher whose sink does not return.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// The entry point: builds an event pipeline.
///
/// A pipeline is three things, returned together by
/// [`PipelineBuilder::build`]:
///
/// - an [`Emitter`] for request threads,
/// - a [`ChildSpec`] to put in your supervision tree: a small supervisor
///   (id `events` by default) holding the batcher worker (id `batcher`) and
///   a finalizer worker (id `finalizer`) that settles the pipeline when the
///   supervisor stops even if the batcher cannot (see below),
/// - an [`EventsHandle`] to flush, close and read the ledger from any thread.
///
/// # Why a supervisor of its own?
///
/// The batcher fails on purpose when its sink reports a fatal error, so a
/// restart builds a fresh sink. Its own supervisor restarts it with an
/// exponential backoff ([`restart_backoff`](PipelineBuilder::restart_backoff))
/// and no restart limit, so a sink that keeps failing — an expired
/// certificate, say — is retried at a slowing pace, logged and counted in the
/// ledger, and never escalates into the rest of your tree. That is the lesson
/// of the incident this crate exists for.
///
/// # Who settles the pipeline at shutdown?
///
/// The batcher's final flush, normally. When no batcher runs at that point
/// (it is waiting out its restart backoff) or it was abandoned (its sink did
/// not return within the shutdown timeout), the finalizer, stopped right after
/// it, does the same without a sink: after [`EventsHandle::close`] it drops
/// what is pending with the reason `shutdown`, logs the tally and sets
/// [`EventsHandle::final_report`]. It also fences the batcher: an abandoned
/// incarnation whose sink returns later changes nothing any more.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use vigil_core::Supervisor;
/// use vigil_events::{Batch, Config, Delivery, EventPipeline, Sink};
///
/// struct Stdout;
/// impl Sink for Stdout {
///     fn deliver(&mut self, batch: &Batch, _budget: Option<Duration>) -> Delivery {
///         println!("{}", String::from_utf8_lossy(batch.body()));
///         Delivery::Delivered
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (emitter, events, handle) = EventPipeline::builder(Config::default())
///     .sink(|| Ok::<_, std::io::Error>(Stdout))
///     .build()?;
/// let system = Supervisor::builder().child(events).start()?;
///
/// emitter.emit(serde_json::json!({"path": "/charge", "status": 201}))?;
/// let report = handle.flush(Duration::from_secs(10))?;
/// assert_eq!(report.ledger.delivered, 1);
///
/// system.shutdown()?;
/// assert!(handle.ledger().is_balanced());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct EventPipeline;

impl EventPipeline {
    /// Starts building a pipeline for events of type `E`.
    pub fn builder<E: Serialize + Send + 'static>(config: Config) -> PipelineBuilder<E> {
        PipelineBuilder {
            config,
            sink: None,
            id: "events".to_owned(),
            restart_backoff: Backoff::exponential(Duration::from_secs(1), Duration::from_secs(60)),
            _events: PhantomData,
        }
    }
}

/// Builds an event pipeline; see [`EventPipeline`].
#[must_use]
pub struct PipelineBuilder<E> {
    config: Config,
    sink: Option<SinkFactory>,
    id: String,
    restart_backoff: Backoff,
    _events: PhantomData<fn(E)>,
}

impl<E> fmt::Debug for PipelineBuilder<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("config", &self.config)
            .field("sink", &self.sink.is_some())
            .field("id", &self.id)
            .field("restart_backoff", &self.restart_backoff)
            .finish()
    }
}

impl<E: Serialize + Send + 'static> PipelineBuilder<E> {
    /// How to build the sink. The batcher calls `factory` on every start and
    /// restart, so a sink that reads its configuration (trust roots,
    /// credentials) in its constructor picks up changes after a fatal
    /// failure.
    ///
    /// The factory runs on a thread of its own, so it may block (read files,
    /// resolve names): neither a slow factory nor an error fails the start of
    /// your tree. Until the sink is built nothing is delivered, as in an
    /// outage: events keep queueing, flushes wait for it within their
    /// deadline, and shutdown does not wait for it beyond its budget. A
    /// factory error fails the batcher, which is restarted after the backoff.
    ///
    /// Required; [`build`](PipelineBuilder::build) fails without it.
    pub fn sink<S, Er, F>(mut self, factory: F) -> Self
    where
        S: Sink,
        Er: Into<BoxError>,
        F: Fn() -> Result<S, Er> + Send + Sync + 'static,
    {
        self.sink = Some(Arc::new(move || match factory() {
            Ok(sink) => Ok(Box::new(sink) as Box<dyn Sink>),
            Err(e) => Err(e.into()),
        }));
        self
    }

    /// The id of the pipeline's supervisor in your tree.
    ///
    /// Defaults to `"events"`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// The pause before each restart of the batcher.
    ///
    /// Defaults to `Backoff::exponential(1 s, 60 s)`.
    pub fn restart_backoff(mut self, backoff: Backoff) -> Self {
        self.restart_backoff = backoff;
        self
    }

    /// Validates the configuration and returns the emitter, the child spec
    /// and the handle.
    ///
    /// Nothing runs until the child spec is started in a supervision tree;
    /// events emitted before that wait in the buffer.
    ///
    /// # Errors
    ///
    /// [`BuildError::Config`] names the configuration field that cannot work,
    /// including [`ConfigError::BufferTooLarge`] when the buffer of events of
    /// type `E` would take more than [`MAX_BUFFER_BYTES`](crate::MAX_BUFFER_BYTES)
    /// (checked before anything is allocated);
    /// [`BuildError::MissingSink`] when [`sink`](PipelineBuilder::sink) was
    /// not called.
    pub fn build(self) -> Result<(Emitter<E>, ChildSpec, EventsHandle), BuildError> {
        self.config.validate().map_err(BuildError::Config)?;
        Buffer::<E>::check_size(&self.config).map_err(BuildError::Config)?;
        let factory = self.sink.ok_or(BuildError::MissingSink)?;
        let shutdown = self.config.shutdown_timeout;
        let shared: Arc<Shared<E>> = Arc::new(Shared::new(self.config));

        let parked = FlushSlot::default();
        let (for_factory, for_batcher) = (Arc::clone(&shared), Arc::clone(&parked));
        let worker = ChildSpec::worker(BATCHER, move || Batcher::new(Arc::clone(&for_factory), &factory, &for_batcher))
            .restart(Restart::Permanent)
            .backoff(self.restart_backoff)
            .shutdown(shutdown.saturating_add(SHUTDOWN_GRACE))
            .mailbox(MAILBOX);
        let addr = worker.addr();
        let nudge = addr.clone();
        shared.buffer.set_waker(Box::new(move || {
            // Full or closed: the batcher is busy or gone; its timer covers it.
            let _ = nudge.try_tell(BatcherMsg::Nudge);
        }));
        let for_finalizer = Arc::clone(&shared);
        // Started before the batcher, so stopped after it.
        let finalizer = ChildSpec::worker(FINALIZER, move || Finalizer {
            shared: Arc::clone(&for_finalizer),
            parked: Arc::clone(&parked),
        })
        .mailbox(1);
        let supervisor = Supervisor::builder()
            .strategy(Strategy::OneForOne)
            // No practical restart limit: failures are paced by the backoff
            // instead (a million restarts in one second is never reached).
            .intensity(vigil_core::MAX_INTENSITY, Duration::from_secs(1))
            .child(finalizer)
            .child(worker);
        let own = supervisor.handle();
        let spec = ChildSpec::supervisor(self.id, supervisor)
            .shutdown(shutdown.saturating_add(SHUTDOWN_GRACE.saturating_mul(2)));
        let handle = EventsHandle::new(addr, Arc::clone(&shared) as _, own);
        Ok((Emitter { shared }, spec, handle))
    }
}

/// The id of the batcher worker in the pipeline's supervisor.
pub(crate) const BATCHER: &str = "batcher";

/// The id of the worker that settles the pipeline when its supervisor stops.
const FINALIZER: &str = "finalizer";

/// Settles the pipeline when its supervisor stops, if the batcher's final
/// flush did not (see [`Shared::settle`]), and answers a flush request the
/// batcher was abandoned with. It has nothing else to do.
struct Finalizer<E> {
    shared: Arc<Shared<E>>,
    parked: FlushSlot,
}

impl<E: Serialize + Send + 'static> Actor for Finalizer<E> {
    type Msg = ();

    fn handle(&mut self, (): (), _: &mut Context<'_, ()>) -> Result<(), BoxError> {
        Ok(())
    }

    fn stopped(&mut self, _: &ExitReason) {
        self.shared.settle(&SystemClock);
        answer_parked(&self.parked, self.shared.snapshot());
    }
}

/// Why [`PipelineBuilder::build`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// The configuration cannot work; the error names the field.
    Config(ConfigError),
    /// No sink factory was given.
    MissingSink,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Config(e) => e.fmt(f),
            BuildError::MissingSink => f.write_str("event pipeline: no sink factory given (call `.sink(..)`)"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Config(e) => Some(e),
            BuildError::MissingSink => None,
        }
    }
}

impl From<ConfigError> for BuildError {
    fn from(e: ConfigError) -> BuildError {
        BuildError::Config(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{Batch, Delivery};

    struct Null;
    impl Sink for Null {
        fn deliver(&mut self, _: &Batch, _: Option<Duration>) -> Delivery {
            Delivery::Delivered
        }
    }

    #[test]
    fn build_reports_config_errors_and_a_missing_sink() {
        let err = EventPipeline::builder::<u32>(Config::default().capacity(0))
            .sink(|| Ok::<_, std::io::Error>(Null))
            .build()
            .unwrap_err();
        assert_eq!(err, BuildError::Config(ConfigError::Zero { field: "capacity" }));
        assert!(err.to_string().contains("capacity"));
        let err = EventPipeline::builder::<u32>(Config::default()).build().unwrap_err();
        assert_eq!(err, BuildError::MissingSink);
    }

    #[test]
    fn emitter_and_handle_can_be_shared_across_threads() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<crate::Emitter<u32>>();
        shareable::<crate::Emitter<serde_json::Value>>();
        shareable::<EventsHandle>();
    }

    #[test]
    fn build_gives_a_named_spec_and_a_working_emitter() {
        let (emitter, spec, handle) = EventPipeline::builder::<u32>(Config::default())
            .sink(|| Ok::<_, std::io::Error>(Null))
            .id("audit-events")
            .build()
            .unwrap();
        assert_eq!(spec.id(), "audit-events");
        emitter.emit(7).unwrap();
        assert_eq!(handle.ledger().queued, 1);
        assert!(handle.ledger().is_balanced());
    }
}
