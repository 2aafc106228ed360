//! Helpers shared by the scenario tests: collectors, sink configs, batches
//! and deliveries. The recording logger, temp dirs, polling and client PKI
//! come from `vigil-testkit`.

use std::path::Path;
use std::time::Duration;

use vigil_collector::{Collector, CollectorStats};
use vigil_events::{Batch, Delivery, Encoding, Sink};
use vigil_https::{HttpsError, HttpsSink, HttpsSinkConfig, HttpsStats};

pub(crate) use vigil_testkit::{
    DEADLINE, LogRecord as Record, TempDir, TestCa, capture_logs, captured_logs, eventually,
};

/// The `vigil::https` records whose message contains `needle` (tests run in
/// parallel, so each filters on its own endpoint).
pub(crate) fn https_logs(needle: &str) -> Vec<Record> {
    captured_logs().into_iter().filter(|r| r.target == "vigil::https" && r.message.contains(needle)).collect()
}

/// Whether any record of any target contains `needle`.
pub(crate) fn any_log_contains(needle: &str) -> bool {
    captured_logs().iter().any(|r| r.message.contains(needle))
}

/// Starts a collector with default settings.
pub(crate) fn collector() -> Collector {
    capture_logs();
    Collector::builder().start().expect("collector starts")
}

/// Starts a collector that closes idle connections quickly, so a test can
/// force the sink onto a new connection (and a new handshake).
pub(crate) fn collector_with_short_idle() -> Collector {
    capture_logs();
    Collector::builder().idle_timeout(Some(Duration::from_millis(200))).start().expect("collector starts")
}

/// Waits until the collector has no open connection, so the sink's next
/// request opens a new one.
pub(crate) fn wait_idle(collector: &Collector) {
    assert!(
        collector.wait_for(DEADLINE, |s: &CollectorStats| s.active_connections == 0),
        "the collector's connections did not close: {:?}",
        collector.stats()
    );
}

/// A config for the collector's endpoint trusting one PEM file.
pub(crate) fn config_for(collector: &Collector, trust: &Path) -> HttpsSinkConfig {
    HttpsSinkConfig::new(collector.endpoint()).trust_file(trust).timeout_global(Some(DEADLINE))
}

/// An NDJSON batch of these sequence numbers, keyed by `key`.
pub(crate) fn batch(key: &str, seqs: std::ops::Range<u64>) -> Batch {
    let seqs: Vec<u64> = seqs.collect();
    let body: String = seqs.iter().map(|s| format!("{{\"seq\":{s},\"msg\":\"event {s}\"}}\n")).collect();
    Batch::new(key, Encoding::Ndjson, seqs, body.into_bytes())
}

/// The [`HttpsError`] inside a failed delivery.
pub(crate) fn https_error(delivery: &Delivery) -> &HttpsError {
    delivery
        .error()
        .unwrap_or_else(|| panic!("expected a failed delivery, got {delivery:?}"))
        .downcast_ref::<HttpsError>()
        .expect("the delivery error is an HttpsError")
}

/// Delivers and asserts success.
pub(crate) fn deliver_ok(sink: &mut HttpsSink, batch: &Batch) {
    let delivery = sink.deliver(batch, None);
    assert!(matches!(delivery, Delivery::Delivered), "expected delivered, got {delivery:?}");
}

/// Delivers inside a polling loop against a collector that closes idle
/// connections quickly. A request can race the collector closing the pooled
/// connection; that is a retryable failure (the batcher would retry), so it is
/// tolerated here. Anything else but success fails the test.
pub(crate) fn deliver_in_loop(sink: &mut HttpsSink, batch: &Batch) {
    match sink.deliver(batch, None) {
        Delivery::Delivered | Delivery::Retryable { .. } => {}
        other => panic!("expected delivered (or a retryable race), got {other:?}"),
    }
}

/// Delivers (successfully, or with a retryable race) until the stats show
/// `n` refused trust reloads.
pub(crate) fn deliver_until_refused(sink: &mut HttpsSink, stats: &HttpsStats, n: u64) {
    let mut i = 0;
    assert!(
        eventually(|| {
            i += 1;
            deliver_in_loop(sink, &batch(&format!("tr-wait-{n}-{i}"), 1000 * n + i..1000 * n + i + 1));
            stats.snapshot().trust_reload_failures >= n
        }),
        "reload failure #{n} was not seen: {:?}",
        stats.snapshot()
    );
}
