//! The incident replay as a newcomer meets it: the pass criteria on a short
//! run (`--duration 6 --rps 400 --json`), the table and the live display on a
//! terminal 80 columns wide, `--help`, and the errors for bad inputs.
use crate::support;

use std::process::{Command, Output, Stdio};

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
    // Isolation: a request thread that blocked on the batcher would wait out
    // the outage (seconds). Scheduler delays of a few tens of ms hit either
    // phase at random on a loaded 2-core host: below 25 ms of difference the
    // ratio proves nothing either way (as in .ci/check-incident).
    let (healthy, outage) = (ms("latency_p99_healthy_ms"), ms("latency_p99_outage_ms"));
    assert!(
        outage <= (2.0 * healthy).max(healthy + 25.0),
        "p99 during the outage within 2x of healthy (or 25 ms): {report:#}"
    );
    // Issue 14: the replay opens with the announcement; the host is not ready
    // before the outage; the timeline reports the fix and the first delivery
    // after it (no timing asserted here: .ci/measure-recovery measures it).
    let timeline = &report["timeline"];
    assert_eq!(timeline["announced_s"].as_f64(), Some(0.0), "{report:#}");
    assert!(timeline["fix_s"].as_f64().is_some(), "{report:#}");
    assert!(timeline["first_delivery_after_fix_s"].as_f64().is_some(), "{report:#}");
    let readiness = &report["readiness_before_outage"];
    assert_eq!(readiness["ready"], false, "{report:#}");
    assert_eq!(readiness["rotations"][0]["ready"], false, "{report:#}");
    assert!(readiness["reasons"][0].as_str().is_some_and(|r| r.contains("does not trust it yet")), "{report:#}");
    // The contrast runs by default: the naive design's figures, in `naive`.
    let naive = &report["naive"];
    for key in ["requests_total", "requests_failed", "crashes", "events_emitted", "events_delivered", "events_lost"] {
        assert!(naive[key].is_u64(), "naive.{key} missing in {report:#}");
    }
    assert_eq!(
        naive["events_emitted"].as_u64().unwrap() - naive["events_delivered"].as_u64().unwrap(),
        naive["events_lost"].as_u64().unwrap(),
        "{report:#}"
    );
    assert!(output.status.success(), "exit status {:?}", output.status);
}

/// Issue 13: the collector reads requests and never answers for 3 s after
/// the outage; the sink's timeouts are longer than that, so only the
/// watchdog can see the hang. It replaces the batcher, the batch in flight is
/// re-sent, and nothing is lost or doubled.
#[test]
fn a_hung_collector_is_seen_by_the_watchdog_and_nothing_is_lost() {
    let args = ["--duration", "12", "--rps", "200", "--hang", "3", "--vigil-only", "--json"];
    let output = support::run_example("incident", &args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&output.stderr)));
    let n = |key: &str| report[key].as_u64().unwrap_or_else(|| panic!("{key} missing in {report:#}"));
    assert!(n("hangs_detected") >= 1, "{report:#}");
    assert!(report["abandoned_threads"].is_u64(), "{report:#}");
    assert_eq!(n("requests_failed"), 0, "{report:#}");
    assert_eq!(n("events_pending"), 0, "{report:#}");
    assert_eq!(n("events_dropped"), 0, "{report:#}");
    assert_eq!(n("events_emitted"), n("events_delivered"), "{report:#}");
    assert_eq!(report["collector_unique_events"].as_u64(), Some(n("events_delivered")), "{report:#}");
    let hung = report["restarts"].as_array().unwrap().iter().any(|r| {
        r["path"] == "root/events/batcher" && r["reason"].as_str().is_some_and(|reason| reason.starts_with("hung in"))
    });
    assert!(hung, "the batcher was restarted because it hung: {report:#}");
    assert!(output.status.success(), "exit status {:?}", output.status);
}

/// Runs the example with `args`, stdin closed, logs off.
fn incident(args: &[&str]) -> Output {
    Command::new(support::example("incident"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running the incident example: {e}"))
}

#[test]
fn the_table_has_a_column_per_design_a_verdict_and_no_status_line_off_a_terminal() {
    let output = incident(&["--duration", "3"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // stdout is a pipe: the table only, no live display.
    assert!(!stdout.lines().any(|l| l.starts_with("design ")), "{stdout}");
    assert!(!stdout.contains('\x1b') && !stdout.contains('\r'), "{stdout}");
    assert!(stdout.lines().any(|l| l.split_whitespace().eq(["Vigil", "naive"])), "a column per design:\n{stdout}");
    let verdict = stdout.lines().find(|l| l.starts_with("Vigil: ")).expect("a verdict");
    assert!(verdict.starts_with("Vigil: 0 of ") && verdict.contains("0 events lost. Naive: "), "{verdict}");
    assert!(verdict.contains(" crashes, ") && verdict.ends_with("events lost."), "{verdict}");
    assert!(stdout.contains("--plot") && stdout.contains("RUST_LOG=vigil=info"), "what to try next:\n{stdout}");
}

#[test]
fn on_an_80_column_terminal_each_design_has_at_most_one_status_row() {
    // `script` (util-linux) runs the example on a pseudo-terminal.
    let exe = support::example("incident");
    let command = format!("stty cols 80 rows 40; exec '{}' --duration 3", exe.display());
    let output = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("`script` from util-linux runs the example on a pseudo-terminal");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    let mut screen = vt100::Parser::new(40, 80, 0);
    let (mut most_vigil, mut most_naive) = (0, 0);
    let mut widest = 0;
    for byte in &output.stdout {
        screen.process(std::slice::from_ref(byte));
        let rows: Vec<String> = screen.screen().rows(0, 80).collect();
        let count = |prefix: &str| rows.iter().filter(|r| r.starts_with(prefix)).count();
        most_vigil = most_vigil.max(count("Vigil "));
        most_naive = most_naive.max(count("naive "));
        assert!(count("design ") <= 1, "{}", rows.join("\n"));
    }
    // Every line of the table fits in 80 columns, long ones shortened at a
    // word (the one-line verdict aside).
    for line in String::from_utf8_lossy(&output.stdout).split(['\n', '\r']) {
        if !line.contains('\x1b') && !line.starts_with("Vigil: ") {
            widest = widest.max(line.chars().count());
        }
    }
    assert!(widest <= 80, "a line of {widest} columns:\n{}", String::from_utf8_lossy(&output.stdout));
    let end = screen.screen().contents();
    assert_eq!((most_vigil, most_naive), (1, 1), "one status row per design at any time; at the end:\n{end}");
    assert!(end.contains("Vigil: 0 of "), "{end}");
    let status_rows: Vec<&str> = end.lines().filter(|l| l.starts_with("Vigil ") || l.starts_with("naive ")).collect();
    assert!(status_rows.iter().all(|r| r.trim_end().len() < 80), "{status_rows:#?}");
}

#[test]
fn help_lists_every_flag_and_exits_0() {
    let output = incident(&["--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--duration",
        "--rps",
        "--clients",
        "--outage",
        "--work-ms",
        "--vigil-only",
        "--naive",
        "--json",
        "--plot",
        "--endpoint",
        "--ca",
        "--hang",
        "--help",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    for default in ["[default: 20]", "[default: 200]", "[default: 8]", "[default: 2]", "[default: 35% of --duration]"] {
        assert!(help.contains(default), "{default} missing from:\n{help}");
    }
}

#[test]
fn each_bad_input_is_refused_before_the_run_with_a_clear_error() {
    let dir = vigil_testkit::TempDir::new("incident-inputs");
    let not_pem = dir.write("not.pem", "hello");
    let missing = dir.path("missing.pem");
    let (missing, not_pem) = (missing.to_str().unwrap(), not_pem.to_str().unwrap());
    let cases: &[(&[&str], &str)] = &[
        (&["--rps", "zero"], "invalid value 'zero' for '--rps <N>'"),
        (&["--duration", "0"], "\"0\" is not a positive number of seconds"),
        (&["--outage", "30", "--duration", "10"], "the fix at 32.5 s, after the run ends"),
        (&["--plot", "missing/dir/x.svg"], "--plot missing/dir/x.svg: directory missing/dir does not exist"),
        (&["--plot", "timeline.png"], "--plot timeline.png: the plot is written as SVG"),
        (&["--endpoint", "https://127.0.0.1:1/ingest"], "--ca <FILE>"),
        (&["--endpoint", "https://127.0.0.1:1/ingest", "--ca", missing], "cannot read it"),
        (&["--endpoint", "https://127.0.0.1:1/ingest", "--ca", not_pem], "no PEM certificate in it"),
        (&["--vigil-only", "--naive"], "cannot be used with"),
        (&["--hang", "30", "--duration", "10"], "past the end of the run"),
        (&["--frobnicate"], "unexpected argument '--frobnicate'"),
    ];
    for (args, expected) in cases {
        let output = incident(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in:\n{stderr}");
        // Refused up front: nothing ran, no table.
        assert!(output.stdout.is_empty(), "{args:?}: {}", String::from_utf8_lossy(&output.stdout));
    }
}

#[test]
fn an_unreachable_endpoint_exits_non_zero_and_names_the_cause() {
    let collector = vigil_collector::Collector::builder().start().unwrap();
    let ca = collector.ca_pem_path();
    let ca = ca.to_str().unwrap();
    // A closed port: refused before the run.
    let output = incident(&["--endpoint", "https://127.0.0.1:1/ingest", "--ca", ca]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--endpoint https://127.0.0.1:1/ingest: unreachable (127.0.0.1:1: "), "{stderr}");
    assert!(output.stdout.is_empty());

    // A collector that answers with a certificate the run does not trust:
    // the run happens, no event is delivered, and the exit status says so.
    let other = vigil_collector::Collector::builder().start().unwrap();
    let endpoint = other.endpoint();
    let output = incident(&["--endpoint", &endpoint, "--ca", ca, "--duration", "2"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("incident: not every event was delivered: 0 of "), "{stderr}");
    assert!(stderr.contains("not trusted: unknown issuer"), "the cause: {stderr}");
    assert!(stdout.contains("== Incident replay"), "the table is still printed: {stdout}");
}

/// `--encoding otlp` with `--endpoint`: the run ships OTLP/HTTP JSON to an
/// OTLP receiver's `/v1/logs` (here the collector's strict parser, which
/// refuses any body off the schema), and the report's figures are the usual
/// ones.
#[test]
fn the_replay_ships_otlp_to_an_external_receiver() {
    let collector = vigil_collector::Collector::builder().start().unwrap();
    let ca = collector.ca_pem_path();
    let endpoint = collector.otlp_endpoint();
    let output = incident(&[
        "--encoding",
        "otlp",
        "--endpoint",
        &endpoint,
        "--ca",
        ca.to_str().unwrap(),
        "--duration",
        "2",
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"));
    let delivered = report["events_delivered"].as_u64().expect("events_delivered");
    assert!(delivered > 0, "{report:#}");
    assert_eq!(report["events_emitted"].as_u64(), Some(delivered), "{report:#}");
    let stats = collector.stats();
    assert_eq!(stats.bad_requests, 0, "every body matched the schema: {stats:?}");
    assert_eq!(stats.otlp_requests, stats.requests, "{stats:?}");
    assert_eq!(stats.otlp_records, stats.events_received, "{stats:?}");
    assert_eq!(stats.unique_events, delivered, "{stats:?}");
}
