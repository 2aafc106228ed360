//! What the pipeline logs (target `vigil::events`): one warning on the first
//! drop of each reason, a summary line while trouble lasts, the final tally.

mod support;

use std::sync::OnceLock;
use std::time::Duration;

use log::{Level, Log, Metadata, Record};
use parking_lot::Mutex;
use support::*;

struct Capture(Mutex<Vec<(Level, String)>>);

impl Log for Capture {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.target().starts_with("vigil::events")
    }

    fn log(&self, r: &Record<'_>) {
        if self.enabled(r.metadata()) {
            self.0.lock().push((r.level(), r.args().to_string()));
        }
    }

    fn flush(&self) {}
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(c).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Debug);
        c
    })
}

fn lines(level: Level, containing: &str) -> usize {
    capture().0.lock().iter().filter(|(l, m)| *l == level && m.contains(containing)).count()
}

#[test]
fn first_drops_warn_once_summaries_repeat_and_shutdown_tallies() {
    let logs = capture();
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
    assert_eq!(lines(Level::Warn, "first event dropped for reason `queue_full`"), 1, "{:?}", logs.0.lock());

    wait_until("two summary lines", || lines(Level::Warn, "event pipeline: accepted=1000") >= 2);
    assert!(lines(Level::Warn, "last error: retryable: test sink: 503") >= 1);

    run.handle.close();
    run.shutdown();
    assert_eq!(lines(Level::Warn, "first event dropped for reason `shutdown`"), 1);
    assert_eq!(lines(Level::Warn, "event pipeline stopped (budget exhausted)"), 1, "{:?}", logs.0.lock());
    let ledger = run.handle.ledger();
    assert_balanced(&ledger);
    assert_eq!(ledger.dropped.queue_full, refused);
    assert_eq!(ledger.pending, 0);
}

#[test]
fn a_pipeline_settled_without_its_batcher_logs_the_final_tally() {
    capture();
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
        capture().0.lock()
    );
    assert_eq!(handle.final_report().map(|r| r.pending), Some(10));
}
