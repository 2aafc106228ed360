//! OTLP/HTTP: the response table row by row, over real TLS against the
//! collector's strict `/v1/logs` route.

use std::time::Duration;

use serde_json::json;
use vigil_collector::{Collector, CollectorStats, Fault};
use vigil_events::{Batch, Delivery, Encoding, OtlpLogs, Sink};
use vigil_https::{HttpsError, HttpsSink, HttpsSinkConfig};

use crate::support::*;

fn otlp_sink(collector: &Collector) -> HttpsSink {
    HttpsSinkConfig::new(collector.otlp_endpoint())
        .trust_file(collector.ca_pem_path())
        .timeout_global(Some(DEADLINE))
        .build()
        .expect("sink builds")
}

/// An OTLP batch of these sequence numbers, each event `{"n": seq, "msg": …}`.
fn otlp_batch(key: &str, seqs: std::ops::Range<u64>) -> Batch {
    let events: Vec<(u64, serde_json::Value)> =
        seqs.map(|s| (s, json!({"n": s, "msg": format!("event {s}")}))).collect();
    let body = OtlpLogs::new()
        .service_name("vigil-https-tests")
        .encode(events.iter().map(|(s, e)| (*s, 1_700_000_000_000, e)))
        .expect("encodes");
    Batch::new(key, Encoding::OtlpLogsJson, events.iter().map(|(s, _)| *s).collect(), body)
}

fn deliver_with(collector: &Collector, sink: &mut HttpsSink, key: &str, fault: Fault) -> Delivery {
    collector.fail_next(1, fault);
    sink.deliver(&otlp_batch(key, 0..3), None)
}

#[test]
fn a_healthy_export_is_recorded_record_by_record() {
    let collector = collector();
    let mut sink = otlp_sink(&collector);
    deliver_ok(&mut sink, &otlp_batch("ok-1", 10..14));
    assert_eq!(collector.seqs().into_iter().collect::<Vec<_>>(), [10, 11, 12, 13]);
    let stats = collector.stats();
    assert_eq!((stats.otlp_requests, stats.otlp_records, stats.bad_requests), (1, 4, 0));
    // The same batch again (a retry after a lost answer) is a duplicate.
    deliver_ok(&mut sink, &otlp_batch("ok-1", 10..14));
    assert_eq!((collector.stats().duplicate_batches, collector.stats().otlp_records), (1, 4));
    let snap = sink.stats().snapshot();
    assert_eq!((snap.deliveries.delivered, snap.events_delivered), (2, 8));
}

/// Each status row of the OTLP table, served by the collector on
/// `/v1/logs`, with the generic mode's answer for the same status beside it.
#[test]
fn status_rows_follow_the_otlp_table_not_the_generic_one() {
    let collector = collector();
    let mut sink = otlp_sink(&collector);
    let mut generic = config_for(&collector, &collector.ca_pem_path()).build().expect("sink builds");
    // (status, OTLP kind, generic kind)
    let rows = [
        (400, "rejected", "rejected"),
        (401, "fatal", "fatal"),
        (403, "fatal", "fatal"),
        (404, "rejected", "rejected"),
        (413, "too_large", "too_large"),
        (429, "retryable", "retryable"),
        (500, "rejected", "retryable"),
        (501, "rejected", "retryable"),
        (502, "retryable", "retryable"),
        (503, "retryable", "retryable"),
        (504, "retryable", "retryable"),
    ];
    for (i, (status, otlp_kind, generic_kind)) in rows.into_iter().enumerate() {
        let delivery = deliver_with(&collector, &mut sink, &format!("row-{i}"), Fault::Status(status));
        assert_eq!(delivery.kind(), otlp_kind, "OTLP {status}: {delivery:?}");
        assert!(matches!(https_error(&delivery), HttpsError::Status { status: s, .. } if *s == status));
        collector.fail_next(1, Fault::Status(status));
        let delivery = generic.deliver(&batch(&format!("generic-{i}"), 0..3), None);
        assert_eq!(delivery.kind(), generic_kind, "generic {status}: {delivery:?}");
    }
    assert!(collector.seqs().is_empty(), "no faulted batch was recorded");
    let snap = sink.stats().snapshot();
    assert_eq!(
        (snap.deliveries.rejected, snap.deliveries.fatal, snap.deliveries.too_large, snap.deliveries.retryable),
        (4, 2, 1, 4)
    );
}

#[test]
fn retry_after_is_honoured_on_every_retryable_status() {
    let collector = collector();
    let mut sink = otlp_sink(&collector);
    for (i, status) in [429, 502, 503, 504].into_iter().enumerate() {
        let fault = Fault::RetryAfter { status, value: format!("{}", i + 2) };
        match deliver_with(&collector, &mut sink, &format!("ra-{i}"), fault) {
            Delivery::Retryable { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(i as u64 + 2)), "status {status}")
            }
            other => panic!("status {status}: {other:?}"),
        }
    }
    // A Retry-After on a status OTLP does not retry changes nothing.
    let fault = Fault::RetryAfter { status: 500, value: "9".into() };
    assert_eq!(deliver_with(&collector, &mut sink, "ra-500", fault).kind(), "rejected");
}

#[test]
fn a_partial_success_drops_exactly_the_rejected_records_and_logs_once() {
    let collector = collector();
    let mut sink = otlp_sink(&collector);
    let key = "partial-unique-key-17";
    collector.fail_next(1, Fault::PartialSuccess(2));
    let delivery = sink.deliver(&otlp_batch(key, 0..5), None);
    let Delivery::PartiallyRejected { rejected, error } = &delivery else { panic!("{delivery:?}") };
    assert_eq!(*rejected, 2);
    assert!(error.to_string().contains("injected fault: 2 log record(s) rejected"), "{error}");
    // The collector kept the first three.
    assert_eq!(collector.seqs().into_iter().collect::<Vec<_>>(), [0, 1, 2]);
    let stats: CollectorStats = collector.stats();
    assert_eq!((stats.otlp_records, stats.otlp_rejected_records), (3, 2));
    let warnings: Vec<_> = https_logs(key).into_iter().filter(|r| r.level == log::Level::Warn).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].message.contains("refused 2 of the 5 log records"), "{}", warnings[0].message);
    let snap = sink.stats().snapshot();
    assert_eq!((snap.deliveries.partially_rejected, snap.events_delivered, snap.events_rejected), (1, 3, 2));
    // More rejected than sent counts as all of them.
    collector.fail_next(1, Fault::PartialSuccess(99));
    match sink.deliver(&otlp_batch("partial-all", 10..12), None) {
        Delivery::PartiallyRejected { rejected: 2, .. } => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_body_off_the_schema_is_a_counted_400_and_rejected() {
    let collector = collector();
    let mut sink = otlp_sink(&collector);
    let bodies: [&[u8]; 3] = [
        b"{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"severity\":9}]}]}]}",
        b"{\"seq\":1}\n",
        b"{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"body\":{\"stringValue\":\"no seq\"}}]}]}]}",
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let batch = Batch::new(format!("bad-{i}"), Encoding::OtlpLogsJson, vec![i as u64], body.to_vec());
        let delivery = sink.deliver(&batch, None);
        assert_eq!(delivery.kind(), "rejected", "{delivery:?}");
        let HttpsError::Status { status: 400, body, .. } = https_error(&delivery) else { panic!("{delivery:?}") };
        assert!(body.contains("not an OTLP ExportLogsServiceRequest"), "{body}");
    }
    let stats = collector.stats();
    assert_eq!((stats.bad_requests, stats.otlp_requests, stats.otlp_records), (3, 3, 0));
}

#[test]
fn gzip_bodies_are_accepted() {
    let collector = collector();
    let mut sink = HttpsSinkConfig::new(collector.otlp_endpoint())
        .trust_file(collector.ca_pem_path())
        .gzip(true)
        .build()
        .expect("sink builds");
    deliver_ok(&mut sink, &otlp_batch("gz", 0..50));
    assert_eq!(collector.stats().otlp_records, 50);
}
