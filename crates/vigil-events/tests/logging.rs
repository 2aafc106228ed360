//! What the pipeline logs (target `vigil::events`): one warning on the first
//! drop of each reason, a summary line while trouble lasts, the final tally.
//!
//! A test binary of its own: it counts lines (`first event dropped …`
//! exactly once) that any other pipeline in the same process would also write.

#[path = "events/support.rs"]
mod support;

use std::time::Duration;

use log::Level;
use support::*;
use vigil_testkit::{LogRecord, capture_logs, captured_logs};

/// The `vigil::events` lines kept so far, as `(level, message)`.
fn records() -> Vec<(Level, String)> {
    captured_logs()
        .into_iter()
        .filter(|r: &LogRecord| r.target.starts_with("vigil::events"))
        .map(|r| (r.level, r.message))
        .collect()
}

fn lines(level: Level, containing: &str) -> usize {
    records().iter().filter(|(l, m)| *l == level && m.contains(containing)).count()
}

#[test]
fn first_drops_warn_once_summaries_repeat_and_shutdown_tallies() {
    capture_logs();
    let control = Control::new();
    control.set_default(Step::Retry(Some(Duration::from_millis(20))));
    let config = fast_config()
        .capacity(10)
        .max_batch_events(5)
        .summary_interval(Duration::from_millis(50))
        .shutdown_timeout(Duration::from_millis(200));
    let mut run = start(config, &control);
    let mut refused = 0;
    for id in 0..1000 {
        if run.emitter.emit(Ev { id }).is_err() {
            refused += 1;
        }
    }
    assert!(refused > 0);
    assert_eq!(lines(Level::Warn, "first event dropped for reason `queue_full`"), 1, "{:?}", records());

    wait_until("two summary lines", || lines(Level::Warn, "event pipeline: accepted=1000") >= 2);
    assert!(lines(Level::Warn, "last error: retryable: test sink: 503") >= 1);

    run.handle.close();
    run.shutdown();
    assert_eq!(lines(Level::Warn, "first event dropped for reason `shutdown`"), 1);
    assert_eq!(lines(Level::Warn, "event pipeline stopped (budget exhausted)"), 1, "{:?}", records());
    let ledger = run.handle.ledger();
    assert_balanced(&ledger);
    assert_eq!(ledger.dropped.queue_full, refused);
    assert_eq!(ledger.pending, 0);
}

#[test]
fn a_pipeline_settled_without_its_batcher_logs_the_final_tally() {
    capture_logs();
    let control = Control::new();
    control.script([Step::Fatal]);
    let (emitter, spec, handle) = vigil_events::EventPipeline::builder(fast_config().max_batch_events(10))
        .sink(control.factory())
        // Down for a long while after its first failure: no batcher runs at shutdown.
        .restart_backoff(vigil_core::Backoff::exponential(Duration::from_secs(60), Duration::from_secs(60)))
        .build()
        .expect("valid pipeline");
    let system = vigil_core::Supervisor::builder().child(spec).start().expect("the tree starts");
    for id in 0..10 {
        emitter.emit(Ev { id }).unwrap();
    }
    wait_until("the batcher failed", || handle.ledger().last_error.is_some_and(|e| e.kind == "fatal"));
    system.shutdown().expect("clean shutdown");
    // Not closed: the ten stay pending, and the tally says so.
    assert_eq!(
        lines(Level::Warn, "event pipeline stopped (no batcher running): delivered 0 dropped 0 pending 10"),
        1,
        "{:?}",
        records()
    );
    assert_eq!(handle.final_report().map(|r| r.pending), Some(10));
}
