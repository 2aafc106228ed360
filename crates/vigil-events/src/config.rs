//! Pipeline configuration and its validation.

use std::fmt;
use std::time::Duration;

use std::sync::OnceLock;

use crate::encode::Framing;
use crate::otlp::{Envelope, OtlpLogs};
use crate::sink::Encoding;

/// What [`Emitter::emit`](crate::Emitter::emit) does when the buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowPolicy {
    /// Refuse the new event: `emit` returns [`Dropped::Full`](crate::Dropped::Full)
    /// with the event, and the drop is counted under `queue_full`. The default.
    #[default]
    DropNewest,
    /// Accept the new event and evict the oldest queued one, counted under
    /// `oldest_evicted`. `emit` succeeds.
    DropOldest,
}

/// The limits and timings of an event pipeline.
///
/// Build one with [`Config::default`] and the setters, which take `self` and
/// chain. [`Config::validate`] (also run by the pipeline builder) rejects
/// values that cannot work, naming the field.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use vigil_events::{Config, OverflowPolicy};
///
/// let config = Config::default()
///     .capacity(10_000)
///     .overflow(OverflowPolicy::DropOldest)
///     .max_batch_events(256)
///     .max_delay(Duration::from_millis(200));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Config {
    pub(crate) capacity: usize,
    pub(crate) overflow: OverflowPolicy,
    pub(crate) max_buffered_bytes: Option<usize>,
    pub(crate) initial_record_estimate: usize,
    pub(crate) max_batch_events: usize,
    pub(crate) max_batch_bytes: usize,
    pub(crate) max_delay: Duration,
    pub(crate) encoding: Encoding,
    /// The OTLP mapping and the start of its bodies, prepared once.
    pub(crate) otlp: Option<(OtlpLogs, Envelope)>,
    pub(crate) retry_backoff_min: Duration,
    pub(crate) retry_backoff_max: Duration,
    pub(crate) max_batch_age: Duration,
    pub(crate) delivery_timeout: Option<Duration>,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) summary_interval: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            capacity: 65_536,
            overflow: OverflowPolicy::DropNewest,
            max_buffered_bytes: None,
            initial_record_estimate: 256,
            max_batch_events: 512,
            max_batch_bytes: 1024 * 1024,
            max_delay: Duration::from_secs(1),
            encoding: Encoding::Ndjson,
            otlp: None,
            retry_backoff_min: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(30),
            max_batch_age: Duration::from_secs(300),
            delivery_timeout: Some(Duration::from_secs(30)),
            shutdown_timeout: Duration::from_secs(5),
            summary_interval: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// The most events the buffer holds. The buffer's memory is allocated
    /// up front: `capacity` slots of the event type plus 24 bytes each. At
    /// most [`MAX_CAPACITY`] slots, and at most [`MAX_BUFFER_BYTES`] in all
    /// (checked by [`PipelineBuilder::build`](crate::PipelineBuilder::build),
    /// which knows the event type).
    ///
    /// Defaults to 65 536.
    pub fn capacity(mut self, capacity: usize) -> Config {
        self.capacity = capacity;
        self
    }

    /// What `emit` does when the buffer is full.
    ///
    /// Defaults to [`OverflowPolicy::DropNewest`].
    pub fn overflow(mut self, overflow: OverflowPolicy) -> Config {
        self.overflow = overflow;
        self
    }

    /// An optional second bound on the buffer: the estimated encoded size of
    /// the queued events. The estimate is the number of queued events times
    /// the average encoded record size the batcher has observed (starting
    /// from [`initial_record_estimate`](Config::initial_record_estimate)), so
    /// `emit` never serializes anything. When the estimate reaches the bound
    /// the buffer counts as full and the overflow policy applies.
    ///
    /// Defaults to `None` (bounded by event count only).
    pub fn max_buffered_bytes(mut self, max_buffered_bytes: Option<usize>) -> Config {
        self.max_buffered_bytes = max_buffered_bytes;
        self
    }

    /// The encoded record size assumed before the batcher has encoded
    /// anything; used by [`max_buffered_bytes`](Config::max_buffered_bytes)
    /// and to decide early whether a byte-full batch is waiting.
    ///
    /// Defaults to 256 bytes.
    pub fn initial_record_estimate(mut self, bytes: usize) -> Config {
        self.initial_record_estimate = bytes;
        self
    }

    /// The most events in one batch. Emitters wake the batcher when this many
    /// events are queued.
    ///
    /// Defaults to 512.
    pub fn max_batch_events(mut self, max_batch_events: usize) -> Config {
        self.max_batch_events = max_batch_events;
        self
    }

    /// The most bytes in one encoded batch body, separators included. A
    /// single record larger than this is dropped with the reason `too_large`.
    ///
    /// Defaults to 1 MiB (1 048 576 bytes).
    pub fn max_batch_bytes(mut self, max_batch_bytes: usize) -> Config {
        self.max_batch_bytes = max_batch_bytes;
        self
    }

    /// The longest an event waits in the buffer before the batcher ships
    /// whatever it has, full batch or not (delivery time and retries come on
    /// top of this).
    ///
    /// Defaults to 1 second.
    pub fn max_delay(mut self, max_delay: Duration) -> Config {
        self.max_delay = max_delay;
        self
    }

    /// How batch bodies are encoded. [`Encoding::OtlpLogsJson`] uses the
    /// mapping given to [`otlp_logs`](Config::otlp_logs), or
    /// [`OtlpLogs::new`] (one per process) without one.
    ///
    /// Defaults to [`Encoding::Ndjson`].
    pub fn encoding(mut self, encoding: Encoding) -> Config {
        self.encoding = encoding;
        self
    }

    /// Encodes batches as OTLP logs ([`Encoding::OtlpLogsJson`]) with this
    /// resource and mapping.
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_events::{Config, Encoding, OtlpLogs};
    /// let config = Config::default().otlp_logs(OtlpLogs::new().service_name("checkout"));
    /// assert!(config.validate().is_ok());
    /// ```
    pub fn otlp_logs(mut self, otlp: OtlpLogs) -> Config {
        let envelope = otlp.envelope();
        self.otlp = Some((otlp, envelope));
        self.encoding = Encoding::OtlpLogsJson;
        self
    }

    /// The encoding with what it needs.
    pub(crate) fn framing(&self) -> Framing<'_> {
        static DEFAULT: OnceLock<(OtlpLogs, Envelope)> = OnceLock::new();
        match self.encoding {
            Encoding::Ndjson => Framing::Ndjson,
            Encoding::JsonArray => Framing::JsonArray,
            Encoding::OtlpLogsJson => {
                let (otlp, envelope) = self.otlp.as_ref().unwrap_or_else(|| {
                    DEFAULT.get_or_init(|| {
                        let otlp = OtlpLogs::new();
                        let envelope = otlp.envelope();
                        (otlp, envelope)
                    })
                });
                Framing::Otlp(otlp, envelope)
            }
        }
    }

    /// The first retry delay after a failed delivery. Each further
    /// consecutive failure doubles it, up to
    /// [`retry_backoff_max`](Config::retry_backoff_max); a random jitter takes
    /// up to half of it away. A receiver's retry-after is a floor.
    ///
    /// Defaults to 100 ms.
    pub fn retry_backoff_min(mut self, retry_backoff_min: Duration) -> Config {
        self.retry_backoff_min = retry_backoff_min;
        self
    }

    /// The longest retry delay the exponential backoff reaches.
    ///
    /// Defaults to 30 seconds.
    pub fn retry_backoff_max(mut self, retry_backoff_max: Duration) -> Config {
        self.retry_backoff_max = retry_backoff_max;
        self
    }

    /// How long a batch may keep failing, counted from its assembly. A batch
    /// that would be retried later than this is dropped with the reason
    /// `expired`.
    ///
    /// Defaults to 5 minutes.
    pub fn max_batch_age(mut self, max_batch_age: Duration) -> Config {
        self.max_batch_age = max_batch_age;
        self
    }

    /// The budget handed to the sink for one delivery attempt in normal
    /// operation (flush and shutdown hand over what is left of their own
    /// budget instead). `None` leaves the timeout to the sink.
    ///
    /// Defaults to 30 seconds.
    pub fn delivery_timeout(mut self, delivery_timeout: Option<Duration>) -> Config {
        self.delivery_timeout = delivery_timeout;
        self
    }

    /// The time budget of the final flush when the batcher stops, counted
    /// from when it first sees the stop request. The batch in flight and
    /// everything still queued share it; each delivery attempt gets what is
    /// left of it as the sink's budget.
    ///
    /// What the budget could not deliver stays pending (the batcher may be
    /// started again, by a supervisor restarting a group, say), unless
    /// [`EventsHandle::close`](crate::EventsHandle::close) was called first:
    /// then it is dropped with the reason `shutdown`.
    ///
    /// The batcher worker's shutdown timeout is this plus 1 s; a sink that
    /// ignores its budget and does not return by then is abandoned, and the
    /// pipeline is settled without it (see
    /// [`EventPipeline`](crate::EventPipeline)). `Duration::MAX` waits as
    /// long as the sink takes.
    ///
    /// Defaults to 5 seconds.
    pub fn shutdown_timeout(mut self, shutdown_timeout: Duration) -> Config {
        self.shutdown_timeout = shutdown_timeout;
        self
    }

    /// How often the batcher logs a summary line while events are dropped or
    /// deliveries fail. Nothing is logged while all is well.
    ///
    /// Defaults to 30 seconds.
    pub fn summary_interval(mut self, summary_interval: Duration) -> Config {
        self.summary_interval = summary_interval;
        self
    }

    /// Checks that the values can work together.
    ///
    /// # Errors
    ///
    /// - [`ConfigError::Zero`] names a count, size or duration that is zero.
    /// - [`ConfigError::MinAboveMax`] when `retry_backoff_min` exceeds
    ///   `retry_backoff_max`.
    /// - [`ConfigError::BatchAboveCapacity`] when a batch could never fill
    ///   because `max_batch_events` exceeds `capacity`.
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_events::{Config, ConfigError};
    ///
    /// let err = Config::default().max_batch_events(0).validate().unwrap_err();
    /// assert_eq!(err, ConfigError::Zero { field: "max_batch_events" });
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let zero_counts = [
            ("capacity", self.capacity),
            ("max_batch_events", self.max_batch_events),
            ("max_batch_bytes", self.max_batch_bytes),
            ("initial_record_estimate", self.initial_record_estimate),
            ("max_buffered_bytes", self.max_buffered_bytes.unwrap_or(1)),
        ];
        for (field, value) in zero_counts {
            if value == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        let zero_durations = [
            ("max_delay", self.max_delay),
            ("retry_backoff_min", self.retry_backoff_min),
            ("retry_backoff_max", self.retry_backoff_max),
            ("max_batch_age", self.max_batch_age),
            ("delivery_timeout", self.delivery_timeout.unwrap_or(Duration::MAX)),
            ("shutdown_timeout", self.shutdown_timeout),
            ("summary_interval", self.summary_interval),
        ];
        for (field, value) in zero_durations {
            if value.is_zero() {
                return Err(ConfigError::Zero { field });
            }
        }
        if self.capacity > MAX_CAPACITY {
            return Err(ConfigError::CapacityTooLarge { capacity: self.capacity, max: MAX_CAPACITY });
        }
        if self.retry_backoff_min > self.retry_backoff_max {
            return Err(ConfigError::MinAboveMax { min: "retry_backoff_min", max: "retry_backoff_max" });
        }
        if self.max_batch_events > self.capacity {
            return Err(ConfigError::BatchAboveCapacity {
                max_batch_events: self.max_batch_events,
                capacity: self.capacity,
            });
        }
        Ok(())
    }
}

/// The largest buffer [`capacity`](Config::capacity): the buffer is
/// allocated up front, so a larger one is refused with
/// [`ConfigError::CapacityTooLarge`].
pub const MAX_CAPACITY: usize = 1 << 24;

/// The most memory the buffer may take (1 GiB): `capacity` times the size of
/// a slot (the event type plus 24 bytes). A larger buffer is refused with
/// [`ConfigError::BufferTooLarge`] before anything is allocated.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use vigil_events::{Batch, BuildError, Config, ConfigError, Delivery, EventPipeline, MAX_CAPACITY, Sink};
/// # struct Null;
/// # impl Sink for Null {
/// #     fn deliver(&mut self, _: &Batch, _: Option<Duration>) -> Delivery { Delivery::Delivered }
/// # }
///
/// // 2^24 slots of a 256-byte event would take 4.7 GB.
/// let err = EventPipeline::builder::<[u64; 32]>(Config::default().capacity(MAX_CAPACITY))
///     .sink(|| Ok::<_, std::io::Error>(Null))
///     .build()
///     .unwrap_err();
/// assert!(matches!(err, BuildError::Config(ConfigError::BufferTooLarge { capacity: MAX_CAPACITY, .. })));
/// ```
pub const MAX_BUFFER_BYTES: usize = 1 << 30;

/// Why a [`Config`] was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The named field is zero, which cannot work.
    Zero {
        /// The setter's name, e.g. `"capacity"`.
        field: &'static str,
    },
    /// A lower bound is above its upper bound.
    MinAboveMax {
        /// The lower bound's field.
        min: &'static str,
        /// The upper bound's field.
        max: &'static str,
    },
    /// The buffer capacity is above [`MAX_CAPACITY`].
    CapacityTooLarge {
        /// The configured `capacity`.
        capacity: usize,
        /// [`MAX_CAPACITY`].
        max: usize,
    },
    /// The buffer would take more than [`MAX_BUFFER_BYTES`] of memory.
    BufferTooLarge {
        /// The configured `capacity`.
        capacity: usize,
        /// The bytes one slot takes for this event type.
        slot_bytes: usize,
        /// [`MAX_BUFFER_BYTES`].
        max_bytes: usize,
    },
    /// A batch holds more events than the buffer can.
    BatchAboveCapacity {
        /// The configured `max_batch_events`.
        max_batch_events: usize,
        /// The configured `capacity`.
        capacity: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Zero { field } => write!(f, "event pipeline config: `{field}` must not be zero"),
            ConfigError::MinAboveMax { min, max } => {
                write!(f, "event pipeline config: `{min}` must not exceed `{max}`")
            }
            ConfigError::CapacityTooLarge { capacity, max } => write!(
                f,
                "event pipeline config: `capacity` ({capacity}) exceeds the maximum of {max} events (the buffer is allocated up front)"
            ),
            ConfigError::BufferTooLarge { capacity, slot_bytes, max_bytes } => write!(
                f,
                "event pipeline config: `capacity` ({capacity}) slots of {slot_bytes} bytes exceed the buffer's maximum of {max_bytes} bytes (it is allocated up front)"
            ),
            ConfigError::BatchAboveCapacity { max_batch_events, capacity } => write!(
                f,
                "event pipeline config: `max_batch_events` ({max_batch_events}) exceeds `capacity` ({capacity})"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = Config::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.max_batch_events, 512);
        assert_eq!(c.max_batch_bytes, 1 << 20);
        assert_eq!(c.max_delay, Duration::from_secs(1));
        assert_eq!(c.overflow, OverflowPolicy::DropNewest);
        assert_eq!(c.encoding, Encoding::Ndjson);
    }

    #[test]
    fn zero_fields_are_named() {
        let cases: Vec<(Config, &str)> = vec![
            (Config::default().capacity(0), "capacity"),
            (Config::default().max_batch_events(0), "max_batch_events"),
            (Config::default().max_batch_bytes(0), "max_batch_bytes"),
            (Config::default().initial_record_estimate(0), "initial_record_estimate"),
            (Config::default().max_buffered_bytes(Some(0)), "max_buffered_bytes"),
            (Config::default().max_delay(Duration::ZERO), "max_delay"),
            (Config::default().retry_backoff_min(Duration::ZERO), "retry_backoff_min"),
            (Config::default().max_batch_age(Duration::ZERO), "max_batch_age"),
            (Config::default().delivery_timeout(Some(Duration::ZERO)), "delivery_timeout"),
            (Config::default().shutdown_timeout(Duration::ZERO), "shutdown_timeout"),
            (Config::default().summary_interval(Duration::ZERO), "summary_interval"),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err, ConfigError::Zero { field });
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn inconsistent_bounds_are_refused() {
        let err = Config::default()
            .retry_backoff_min(Duration::from_secs(10))
            .retry_backoff_max(Duration::from_secs(1))
            .validate()
            .unwrap_err();
        assert_eq!(err, ConfigError::MinAboveMax { min: "retry_backoff_min", max: "retry_backoff_max" });

        let err = Config::default().capacity(10).max_batch_events(11).validate().unwrap_err();
        assert_eq!(err, ConfigError::BatchAboveCapacity { max_batch_events: 11, capacity: 10 });
        assert!(Config::default().delivery_timeout(None).validate().is_ok());

        let err = Config::default().capacity(usize::MAX).validate().unwrap_err();
        assert_eq!(err, ConfigError::CapacityTooLarge { capacity: usize::MAX, max: MAX_CAPACITY });
        assert!(Config::default().capacity(MAX_CAPACITY).validate().is_ok());
    }
}
