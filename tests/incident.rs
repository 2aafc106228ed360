//! The incident replay's pass criteria, asserted on a short run of the
//! example (`--duration 6 --rps 400 --json`).
mod support;

use serde_json::Value;

#[test]
fn the_incident_replay_loses_no_request_and_no_event() {
    let output = support::run_example("incident", &["--duration", "6", "--rps", "400", "--json"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&output.stderr)));
    let n = |key: &str| report[key].as_u64().unwrap_or_else(|| panic!("{key} missing in {report:#}"));
    let ms = |key: &str| report[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {report:#}"));

    for key in [
        "requests_total",
        "requests_failed",
        "latency_p50_ms",
        "latency_p99_ms",
        "events_emitted",
        "events_delivered",
        "events_dropped",
        "events_pending",
        "batcher_restarts",
        "tls_failures",
        "cert_rotations",
        "duration_s",
    ] {
        assert!(report.get(key).is_some(), "key {key} missing in {report:#}");
    }
    assert!(report["events_dropped_by_reason"].is_object());

    // At 400 requests/s for 6 s, about 2,400 requests (enough samples for a
    // steady p99 in each phase).
    assert!(n("requests_total") > 1200, "{report:#}");
    assert_eq!(n("requests_failed"), 0, "{report:#}");
    assert_eq!(n("events_pending"), 0, "{report:#}");
    assert_eq!(n("events_dropped"), 0, "the buffer holds the whole outage: {report:#}");
    assert_eq!(n("events_emitted"), n("events_delivered") + n("events_dropped"), "{report:#}");
    assert_eq!(n("events_emitted"), n("requests_total"), "one event per request: {report:#}");
    assert_eq!(report["collector_unique_events"].as_u64(), Some(n("events_delivered")), "{report:#}");
    assert!(n("batcher_restarts") >= 1, "{report:#}");
    assert!(n("tls_failures") >= 1, "{report:#}");
    assert!(n("cert_rotations") >= 1, "{report:#}");
    assert!(
        ms("latency_p99_outage_ms") <= 2.0 * ms("latency_p99_healthy_ms"),
        "p99 during the outage within 2x of healthy: {report:#}"
    );
    assert!(output.status.success(), "exit status {:?}", output.status);
}

#[test]
fn bad_arguments_get_a_clear_error() {
    let output = support::run_example("incident", &["--rps", "zero"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--rps needs a positive integer"));
    let output = support::run_example("incident", &["--endpoint", "https://127.0.0.1:1/ingest"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--endpoint and --ca go together"));
}
