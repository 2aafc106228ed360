//! What a flush or the final shutdown flush accomplished.

use std::fmt;

use crate::ledger::{DropCounts, LedgerSnapshot};

/// The accounting of one flush, or of the final flush at shutdown.
///
/// `delivered` and `dropped` count what the batcher resolved during the
/// flush. `pending` is what is still undelivered at its end (queued plus in
/// flight); after the final flush it is normally zero, because whatever the
/// budget could not deliver is dropped with the reason `shutdown` — unless the
/// sink is still holding a batch (see [`EventsHandle::final_report`](crate::EventsHandle::final_report)).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlushReport {
    /// Events delivered during the flush.
    pub delivered: u64,
    /// Events the batcher dropped during the flush, by reason (drops by
    /// emitters are in [`ledger`](FlushReport::ledger)).
    pub dropped: DropCounts,
    /// Events neither delivered nor dropped when the flush ended.
    pub pending: u64,
    /// How long the flush took, in milliseconds.
    pub elapsed_ms: u64,
    /// The whole ledger when the flush ended.
    pub ledger: LedgerSnapshot,
}

impl fmt::Display for FlushReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "delivered {} dropped {} pending {} in {} ms; ledger: {}",
            self.delivered,
            self.dropped.total(),
            self.pending,
            self.elapsed_ms,
            self.ledger
        )
    }
}

/// Why a flush did not deliver everything it was asked to. Each variant
/// carries the report of what was done, so nothing goes unaccounted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlushError {
    /// The deadline passed with events still pending (also returned when the
    /// batcher was too busy, e.g. inside a slow delivery, to answer in time;
    /// the report is then the ledger as it stood).
    Timeout(FlushReport),
    /// The sink reported a fatal failure; the batcher is restarting with a
    /// fresh sink and the pending events are kept.
    SinkFailed(FlushReport),
    /// The batcher is not running (not started yet, or stopped).
    Disconnected(FlushReport),
}

impl FlushError {
    /// The report of what the flush did.
    pub fn report(&self) -> &FlushReport {
        match self {
            FlushError::Timeout(r) | FlushError::SinkFailed(r) | FlushError::Disconnected(r) => r,
        }
    }

    /// Takes the report out.
    pub fn into_report(self) -> FlushReport {
        match self {
            FlushError::Timeout(r) | FlushError::SinkFailed(r) | FlushError::Disconnected(r) => r,
        }
    }
}

impl fmt::Display for FlushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlushError::Timeout(r) => write!(f, "flush deadline passed with {} events pending", r.pending),
            FlushError::SinkFailed(r) => {
                write!(f, "flush stopped by a fatal sink failure with {} events pending", r.pending)
            }
            FlushError::Disconnected(r) => {
                write!(f, "flush impossible: the batcher is not running ({} events pending)", r.pending)
            }
        }
    }
}

impl std::error::Error for FlushError {}
