//! Issue 16, the main job: `--crash` kills the service process (SIGKILL) in
//! the outage, near the backlog's height, and restarts it. With its spool,
//! Vigil's restarted process replays the backlog from disk and its ledger
//! balances over both lives; without one (`--no-spool`), and in the naive
//! design, the backlog dies with the process, and the report says how many.
//!
//! A SIGKILL can take what the spool writer had not yet taken from memory:
//! events emitted in the last few milliseconds (the writer takes them every
//! 10 ms; docs/design.md, "What is durable when"). The report bounds that by
//! `crash_window_events`, the requests answered in the 50 ms before the
//! kill; anything lost beyond it, with a spool, fails the run.
use crate::support;

use serde_json::Value;

/// Runs a short crash replay with `args` and returns its JSON report and
/// exit code.
fn crash_replay(args: &[&str]) -> (Value, Option<i32>) {
    let mut all = vec!["--crash", "--duration", "8", "--rps", "300", "--json"];
    all.extend_from_slice(args);
    let output = support::run_example("incident", &all);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&output.stderr)));
    (report, output.status.code())
}

fn n(report: &Value, key: &str) -> u64 {
    report[key].as_u64().unwrap_or_else(|| panic!("{key} missing in {report:#}"))
}

#[test]
fn a_crash_in_the_outage_costs_vigil_with_a_spool_nothing_beyond_the_writers_window() {
    let (r, code) = crash_replay(&[]);
    assert_eq!(r["spool"], true, "{r:#}");
    let backlog = n(&r, "backlog_at_crash");
    assert!(backlog > 100, "killed with a backlog (300 requests/s, 2 s into the outage): {r:#}");
    // The backlog comes back from disk; at most the writer's last milliseconds are lost.
    let window = n(&r, "crash_window_events");
    assert!(n(&r, "events_lost_in_crash") <= window, "lost within the writer's window only: {r:#}");
    assert!(n(&r, "events_recovered") + window >= backlog, "the backlog replayed from the spool: {r:#}");
    // The restarted process's ledger covers both lives and balances; everything was delivered.
    assert_eq!(r["ledger_balanced"], true, "{r:#}");
    assert_eq!(n(&r, "events_pending"), 0, "{r:#}");
    assert_eq!(n(&r, "events_emitted"), n(&r, "events_delivered") + n(&r, "events_dropped"), "{r:#}");
    assert_eq!(n(&r, "events_dropped"), 0, "{r:#}");
    assert_eq!(r["collector_unique_events"].as_u64(), Some(n(&r, "events_delivered")), "{r:#}");
    // Requests fail only while the process is down.
    assert_eq!(n(&r, "requests_failed"), n(&r, "requests_failed_in_crash"), "{r:#}");
    assert!(r["crash_at_s"].as_f64().is_some_and(|t| t > 0.0), "{r:#}");
    // The naive design, killed the same way, loses what it held.
    let naive = &r["naive"];
    assert!(naive["events_lost_in_crash"].as_u64().is_some_and(|l| l > 0), "{r:#}");
    assert_eq!(naive["events_recovered"], 0, "{r:#}");
    assert_eq!(code, Some(0), "{r:#}");
}

#[test]
fn a_crash_in_the_outage_costs_vigil_without_a_spool_its_backlog() {
    let (r, code) = crash_replay(&["--no-spool", "--vigil-only"]);
    assert_eq!(r["spool"], false, "{r:#}");
    let backlog = n(&r, "backlog_at_crash");
    assert!(backlog > 100, "{r:#}");
    // Everything the killed process had not delivered is gone (its backlog
    // grew after its last report), and nothing is recovered.
    assert!(n(&r, "events_lost_in_crash") >= backlog, "{r:#}");
    assert_eq!(n(&r, "events_recovered"), 0, "{r:#}");
    // The restarted process's own ledger balances: it never knew the lost ones.
    assert_eq!(r["ledger_balanced"], true, "{r:#}");
    assert_eq!(n(&r, "events_pending"), 0, "{r:#}");
    // The loss is a shortfall: exit status 1.
    assert_eq!(code, Some(1), "{r:#}");
}

#[test]
fn help_shows_the_crash_flags_and_no_spool_needs_crash() {
    let help = support::run_example("incident", &["--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("--crash") && text.contains("--no-spool"), "{text}");
    let refused = support::run_example("incident", &["--no-spool"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--crash"), "{refused:?}");
    let refused = support::run_example("incident", &["--crash", "--hang", "1"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot be used with"), "{refused:?}");
}
