//! Counters reported by [`Collector::stats`](crate::Collector::stats).

/// What the collector has seen so far. A snapshot; it does not update.
///
/// "Events" are records inside accepted batches; "requests" are `POST /ingest`
/// and `POST /v1/logs` requests whose head and body were read completely. Health, stats and
/// control requests are not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct CollectorStats {
    /// Ingest requests received (faulted or not).
    pub requests: u64,
    /// Batches recorded for the first time.
    pub batches_accepted: u64,
    /// Batches whose idempotency key had already been accepted. They are
    /// answered `200` and their events are not counted again.
    pub duplicate_batches: u64,
    /// Records in accepted (non-duplicate) batches.
    pub events_received: u64,
    /// Distinct sequence numbers received; the size of
    /// [`Collector::seqs`](crate::Collector::seqs).
    pub unique_events: u64,
    /// Records in accepted batches whose `seq` had been seen before (for
    /// example a batch re-sent under a new key).
    pub duplicate_events: u64,
    /// Ingest requests refused because the body did not parse or was too
    /// large (400, 413, 415).
    pub bad_requests: u64,
    /// `POST /v1/logs` requests received (faulted or not); also counted in
    /// [`requests`](CollectorStats::requests).
    pub otlp_requests: u64,
    /// OTLP log records in accepted (non-duplicate) `/v1/logs` requests;
    /// also counted in [`events_received`](CollectorStats::events_received).
    pub otlp_records: u64,
    /// OTLP log records refused in a `partialSuccess` (the
    /// [`PartialSuccess`](crate::Fault::PartialSuccess) fault).
    pub otlp_rejected_records: u64,
    /// Ingest requests that were given a fault other than `Healthy`.
    pub faults_served: u64,
    /// CA rotations since start.
    pub rotations: u64,
    /// TCP connections accepted since start.
    pub connections: u64,
    /// TCP connections open right now.
    pub active_connections: u64,
    /// TCP connections closed at once because `max_connections` were open.
    pub rejected_connections: u64,
    /// TLS handshakes that failed (for example because the client did not
    /// trust the certificate).
    pub tls_handshake_failures: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_with_field_names() {
        let stats = CollectorStats { requests: 3, unique_events: 7, ..CollectorStats::default() };
        let json = serde_json::to_value(stats).unwrap();
        assert_eq!(json["requests"], 3);
        assert_eq!(json["unique_events"], 7);
        assert_eq!(json["rotations"], 0);
        let back: CollectorStats = serde_json::from_value(json).unwrap();
        assert_eq!(back, stats);
    }
}
