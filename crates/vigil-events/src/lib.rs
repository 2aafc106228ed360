//! vigil-events: a never-blocking event buffer and a supervised batcher that
//! accounts for every event.
//!
//! # How the pieces fit
//!
//! - Request threads hold an [`Emitter`]. [`Emitter::emit`] stamps the event
//!   with a process-unique sequence number and the time and pushes it onto a
//!   bounded lock-free queue. It never blocks, never panics and takes no lock;
//!   when the queue is full the [`OverflowPolicy`] drops the newest or the
//!   oldest event, and counts it.
//! - A batcher actor (a [`vigil_core`] worker, under a small supervisor of its
//!   own) drains the queue into [`Batch`]es bounded by event count, encoded
//!   size and delay ([`Config`]), encoded as NDJSON or a JSON array of
//!   `{"seq": N, "ts": <unix ms>, "event": ...}` records, or as one OTLP
//!   `ExportLogsServiceRequest` ([`OtlpLogs`]), and hands them one
//!   at a time to a [`Sink`]. The sink classifies each attempt as a
//!   [`Delivery`]; the batcher retries, backs off, splits, drops or restarts
//!   accordingly.
//! - The buffer, the batch in flight and the ledger live outside the actor,
//!   so a restart — after a panic in the sink or in an event's `Serialize`,
//!   or a fatal delivery — loses nothing.
//! - The ledger ([`LedgerSnapshot`]) counts every event: accepted, delivered,
//!   dropped by [`DropReason`], and pending. `accepted = delivered + dropped
//!   + pending` whenever nothing is moving.
//! - An [`EventsHandle`] flushes with a deadline, closes the pipeline and
//!   reads the ledger from any thread.
//!
//! [`EventPipeline::builder`] puts them together.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use serde::Serialize;
//! use vigil_core::Supervisor;
//! use vigil_events::{Batch, Config, Delivery, EventPipeline, OverflowPolicy, Sink};
//!
//! #[derive(Serialize)]
//! struct Request { path: &'static str, status: u16, micros: u64 }
//!
//! /// A sink that counts what it receives (a real one ships over HTTPS).
//! struct Counting(std::sync::Arc<std::sync::atomic::AtomicUsize>);
//! impl Sink for Counting {
//!     fn deliver(&mut self, batch: &Batch, _budget: Option<Duration>) -> Delivery {
//!         self.0.fetch_add(batch.len(), std::sync::atomic::Ordering::SeqCst);
//!         Delivery::Delivered
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
//! let counter = received.clone();
//! let config = Config::default()
//!     .capacity(10_000)
//!     .overflow(OverflowPolicy::DropOldest)
//!     .max_delay(Duration::from_millis(200));
//! let (emitter, events, handle) = EventPipeline::builder(config)
//!     // Called on every (re)start of the batcher: a fatal failure rebuilds the sink.
//!     .sink(move || Ok::<_, std::io::Error>(Counting(counter.clone())))
//!     .build()?;
//! let system = Supervisor::builder().child(events).start()?;
//!
//! // Request threads: never blocks, whatever the sink does.
//! std::thread::scope(|s| {
//!     for t in 0..4 {
//!         let emitter = emitter.clone();
//!         s.spawn(move || {
//!             for i in 0..100 {
//!                 let _ = emitter.emit(Request { path: "/charge", status: 201, micros: t * 1000 + i });
//!             }
//!         });
//!     }
//! });
//!
//! // Before exiting: deliver what is queued, then stop for good.
//! handle.flush(Duration::from_secs(10))?;
//! handle.close();
//! system.shutdown()?;
//! let ledger = handle.ledger();
//! assert_eq!(ledger.accepted, 400);
//! assert_eq!(ledger.delivered, 400);
//! assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 400);
//! assert!(ledger.is_balanced());
//! println!("{}", serde_json::to_string(&ledger)?);
//! # Ok(())
//! # }
//! ```
//!
//! # What survives a restart?
//!
//! Everything but the sink. The queue, the batch being assembled, the batch in
//! flight with its idempotency key, attempt count and retry schedule, the
//! backoff state and the ledger live in an `Arc` that the actor's factory
//! hands to each incarnation; the factory builds only a fresh sink. What the
//! dead incarnation left half done is settled first:
//!
//! - it died inside the sink: the batch is kept and retried after a backoff
//!   (a receiver can de-duplicate by the unchanged idempotency key);
//! - it died serializing an event: that one event is dropped with the reason
//!   `encode` (retrying it would kill the batcher again); the batch being
//!   assembled around it is kept.
//!
//! # Delivery results
//!
//! | [`Delivery`] | the batcher |
//! |---|---|
//! | `Delivered` | counts the events delivered |
//! | `Retryable { retry_after }` | keeps the batch; retries after an exponential backoff with jitter, never sooner than `retry_after` |
//! | `TooLarge` | splits the batch in halves and delivers them in order; a single event is dropped as `too_large` |
//! | `Rejected` | drops the batch, counted as `rejected` |
//! | `Fatal` | keeps the batch, fails the actor; the restart builds a fresh sink and retries after the backoff |
//!
//! A batch whose next attempt would come later than `max_batch_age` after it
//! was assembled is dropped as `expired`.
//!
//! # Logging
//!
//! Target `vigil::events`: a warning on the first drop of each reason, a
//! summary line every `summary_interval` while drops or failures happen, and
//! the final tally when the batcher stops.

mod batcher;
mod buffer;
mod clock;
mod coarse;
mod config;
mod encode;
mod engine;
mod flush;
mod handle;
mod ledger;
mod local;
mod otlp;
mod pipeline;
mod sink;

pub use buffer::{Dropped, Emitter};
pub use config::{Config, ConfigError, MAX_BUFFER_BYTES, MAX_CAPACITY, OverflowPolicy};
pub use flush::{FlushError, FlushReport};
pub use handle::EventsHandle;
pub use ledger::{DropCounts, DropReason, LastError, LedgerSnapshot};
pub use otlp::{LogFields, OtlpLogs, SEQ_ATTRIBUTE, Severity};
pub use pipeline::{BuildError, EventPipeline, PipelineBuilder};
pub use sink::{Batch, Delivery, Encoding, Sink};
/// The boxed error a failed [`Delivery`] carries: the same alias as everywhere in Vigil.
pub use vigil_core::BoxError;
