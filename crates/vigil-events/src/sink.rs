//! The delivery contract between the batcher and whatever ships batches.
//!
//! A [`Sink`] receives one encoded [`Batch`] at a time and answers with a
//! [`Delivery`]. The batcher owns everything else: retries, backoff,
//! splitting, expiry and the ledger. A sink only has to classify what happened.

use std::fmt;
use std::time::Duration;

use vigil_core::BoxError;

/// How the records of a [`Batch`] are laid out in its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// One JSON object per line, each line ending in `\n`.
    /// Content type `application/x-ndjson`. The default.
    #[default]
    Ndjson,
    /// One JSON array of objects. Content type `application/json`.
    JsonArray,
    /// One OTLP `ExportLogsServiceRequest` in the OTLP JSON encoding, one
    /// log record per event (see [`OtlpLogs`](crate::OtlpLogs) for the
    /// mapping). Content type `application/json`; POST it to an OTLP/HTTP
    /// receiver's `/v1/logs`.
    OtlpLogsJson,
}

impl Encoding {
    /// The HTTP content type of a body in this encoding.
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_events::Encoding;
    /// assert_eq!(Encoding::Ndjson.content_type(), "application/x-ndjson");
    /// assert_eq!(Encoding::JsonArray.content_type(), "application/json");
    /// assert_eq!(Encoding::OtlpLogsJson.content_type(), "application/json");
    /// ```
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Ndjson => "application/x-ndjson",
            Encoding::JsonArray | Encoding::OtlpLogsJson => "application/json",
        }
    }

    /// Whether this is an OTLP encoding, whose receivers answer by the OTLP
    /// response rules.
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_events::Encoding;
    /// assert!(Encoding::OtlpLogsJson.is_otlp());
    /// assert!(!Encoding::Ndjson.is_otlp());
    /// ```
    pub fn is_otlp(self) -> bool {
        matches!(self, Encoding::OtlpLogsJson)
    }
}

/// An encoded batch of events, ready to ship.
///
/// Every record in the body is a JSON object that carries the event's
/// process-unique sequence number: a top-level `seq` field, or in OTLP the
/// `vigil.seq` attribute. A retried batch keeps
/// its [idempotency key](Batch::idempotency_key), so a receiver can drop
/// duplicates.
#[derive(Clone, PartialEq, Eq)]
pub struct Batch {
    key: String,
    encoding: Encoding,
    seqs: Vec<u64>,
    body: Vec<u8>,
}

impl Batch {
    /// Builds a batch from an already encoded body.
    ///
    /// `seqs` lists the sequence numbers of the records in `body`, in order.
    /// The batcher builds batches itself; this constructor exists for sinks'
    /// tests and for tools that replay batches.
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_events::{Batch, Encoding};
    /// let batch = Batch::new("b-1", Encoding::Ndjson, vec![7], b"{\"seq\":7}\n".to_vec());
    /// assert_eq!(batch.len(), 1);
    /// assert_eq!(batch.idempotency_key(), "b-1");
    /// ```
    pub fn new(key: impl Into<String>, encoding: Encoding, seqs: Vec<u64>, body: Vec<u8>) -> Batch {
        Batch { key: key.into(), encoding, seqs, body }
    }

    /// The idempotency key. It is the same on every retry of this batch.
    pub fn idempotency_key(&self) -> &str {
        &self.key
    }

    /// How the body is encoded.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// The HTTP content type of the body.
    pub fn content_type(&self) -> &'static str {
        self.encoding.content_type()
    }

    /// The encoded body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The sequence numbers of the records in the body, in order.
    pub fn seqs(&self) -> &[u64] {
        &self.seqs
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    /// Whether the batch holds no records.
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("key", &self.key)
            .field("encoding", &self.encoding)
            .field("events", &self.seqs.len())
            .field("bytes", &self.body.len())
            .finish()
    }
}

/// What happened to one delivery attempt, as the sink classifies it.
///
/// | variant | what the batcher does |
/// |---|---|
/// | [`Delivered`](Delivery::Delivered) | counts the events as delivered |
/// | [`Retryable`](Delivery::Retryable) | keeps the batch, backs off (exponential with jitter, at least `retry_after`) and tries again |
/// | [`TooLarge`](Delivery::TooLarge) | splits the batch in halves and delivers each |
/// | [`Rejected`](Delivery::Rejected) | drops the batch, counting its events under `rejected` |
/// | [`PartiallyRejected`](Delivery::PartiallyRejected) | counts `rejected` of the batch's events under `rejected` and the rest as delivered |
/// | [`Fatal`](Delivery::Fatal) | keeps the batch and fails the actor; the supervisor restarts it and a fresh sink is built |
#[derive(Debug)]
#[non_exhaustive]
pub enum Delivery {
    /// The receiver accepted the batch.
    Delivered,
    /// A transient failure: try again later.
    Retryable {
        /// What went wrong.
        error: BoxError,
        /// The receiver asked to wait at least this long before retrying.
        retry_after: Option<Duration>,
    },
    /// The receiver refused the batch because of its size.
    TooLarge {
        /// What went wrong.
        error: BoxError,
    },
    /// The receiver refused the batch for good.
    Rejected {
        /// What went wrong.
        error: BoxError,
    },
    /// The receiver accepted the batch but refused `rejected` of its records
    /// for good (an OTLP `partialSuccess`). It does not say which ones, so
    /// the batch is done: the batcher counts `rejected` events under
    /// `rejected` (at most the batch's size) and the others as delivered.
    PartiallyRejected {
        /// How many records the receiver refused.
        rejected: u64,
        /// What the receiver said about them.
        error: BoxError,
    },
    /// A configuration or trust failure that retrying with this sink cannot fix.
    Fatal {
        /// What went wrong.
        error: BoxError,
    },
}

impl Delivery {
    /// A short name for the variant, for logs and counters:
    /// `delivered`, `retryable`, `too_large`, `rejected`,
    /// `partially_rejected` or `fatal`.
    pub fn kind(&self) -> &'static str {
        match self {
            Delivery::Delivered => "delivered",
            Delivery::Retryable { .. } => "retryable",
            Delivery::TooLarge { .. } => "too_large",
            Delivery::Rejected { .. } => "rejected",
            Delivery::PartiallyRejected { .. } => "partially_rejected",
            Delivery::Fatal { .. } => "fatal",
        }
    }

    /// The error carried by a failed delivery, if any.
    pub fn error(&self) -> Option<&BoxError> {
        match self {
            Delivery::Delivered => None,
            Delivery::Retryable { error, .. }
            | Delivery::TooLarge { error }
            | Delivery::Rejected { error }
            | Delivery::PartiallyRejected { error, .. }
            | Delivery::Fatal { error } => Some(error),
        }
    }
}

/// Ships batches somewhere. Synchronous, one batch at a time.
///
/// The batcher builds its sink through the child factory on every (re)start,
/// so a sink that reads configuration (trust files, credentials) in its
/// constructor picks up changes on restart.
///
/// A sink may block; it runs on the batcher's own thread. It should bound
/// each attempt by `budget` when one is given: on flush and shutdown the
/// batcher passes what is left of its time budget.
///
/// A panic inside `deliver` is caught by the supervisor; the batch is kept and
/// retried by the next incarnation.
pub trait Sink: Send + 'static {
    /// Delivers one batch and classifies the outcome.
    ///
    /// `budget`, when set, is the most time this attempt may take.
    fn deliver(&mut self, batch: &Batch, budget: Option<Duration>) -> Delivery;
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn deliver(&mut self, batch: &Batch, budget: Option<Duration>) -> Delivery {
        (**self).deliver(batch, budget)
    }
}
