//! What a flush or the final shutdown flush accomplished.

use std::fmt;

use crate::ledger::{DropCounts, LedgerSnapshot};

/// The accounting of one flush, or of the final flush at shutdown.
///
/// `delivered` and `dropped` count what happened while the flush ran.
/// `pending` is what is still undelivered at its end (queued plus in flight).
/// After the final flush, pending events are dropped with the reason
/// `shutdown` if the pipeline was [closed](crate::EventsHandle::close) first,
/// and otherwise stay pending (see [`EventsHandle::final_report`](crate::EventsHandle::final_report)).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlushReport {
    /// Events delivered during the flush.
    pub delivered: u64,
    /// Events dropped while the flush ran, by reason (including emitters'
    /// drops in the meantime).
    pub dropped: DropCounts,
    /// Events neither delivered nor dropped when the flush ended.
    pub pending: u64,
    /// How long the flush took, in milliseconds.
    pub elapsed_ms: u64,
    /// The whole ledger when the flush ended.
    pub ledger: LedgerSnapshot,
}

impl FlushReport {
    /// The report of what happened between two snapshots.
    pub(crate) fn between(before: &LedgerSnapshot, after: LedgerSnapshot, elapsed: std::time::Duration) -> FlushReport {
        FlushReport {
            delivered: after.delivered.saturating_sub(before.delivered),
            dropped: after.dropped.since(&before.dropped),
            pending: after.pending,
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            ledger: after,
        }
    }
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
/// carries the report of what was done (boxed, to keep `Result`s small), so
/// nothing goes unaccounted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlushError {
    /// The deadline passed with events still pending (also returned when the
    /// batcher was too busy, e.g. inside a slow delivery, to answer in time;
    /// the report is then the ledger as it stood).
    Timeout(Box<FlushReport>),
    /// The sink reported a fatal failure; the batcher is restarting with a
    /// fresh sink and the pending events are kept.
    SinkFailed(Box<FlushReport>),
    /// The batcher has stopped for good (its supervision tree shut down), or
    /// was asked to stop while the flush ran: a flush yields to shutdown, and
    /// the final flush takes over within its own budget. A batcher that was
    /// never started, or is waiting to be restarted, cannot answer either;
    /// that ends in [`Timeout`](FlushError::Timeout).
    Closed(Box<FlushReport>),
}

impl FlushError {
    /// The report of what the flush did.
    pub fn report(&self) -> &FlushReport {
        match self {
            FlushError::Timeout(r) | FlushError::SinkFailed(r) | FlushError::Closed(r) => r,
        }
    }

    /// Takes the report out.
    pub fn into_report(self) -> FlushReport {
        match self {
            FlushError::Timeout(r) | FlushError::SinkFailed(r) | FlushError::Closed(r) => *r,
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
            FlushError::Closed(r) => {
                write!(f, "flush impossible: the batcher is not running ({} events pending)", r.pending)
            }
        }
    }
}

impl std::error::Error for FlushError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_diff_two_snapshots_and_errors_give_them_back() {
        let before = LedgerSnapshot { accepted: 10, delivered: 4, pending: 6, ..LedgerSnapshot::default() };
        let mut after = LedgerSnapshot { accepted: 12, delivered: 9, pending: 2, ..LedgerSnapshot::default() };
        after.dropped.expired = 1;
        let report = FlushReport::between(&before, after.clone(), std::time::Duration::from_millis(1500));
        assert_eq!((report.delivered, report.dropped.expired, report.pending, report.elapsed_ms), (5, 1, 2, 1500));
        assert_eq!(report.ledger, after);
        let err = FlushError::Timeout(Box::new(report.clone()));
        assert_eq!(err.to_string(), "flush deadline passed with 2 events pending");
        assert_eq!(err.report(), &report);
        assert_eq!(err.into_report(), report);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["dropped"]["expired"], 1);
    }
}
