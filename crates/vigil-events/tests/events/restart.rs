//! A restart loses nothing: sink panics, fatal deliveries, a failing sink
//! factory and a panicking serializer.

use crate::support;

use std::time::Duration;

use serde::Serialize;
use support::*;
use vigil_core::{Backoff, Supervisor};
use vigil_events::{EventPipeline, LedgerSnapshot};

fn settle(run: &mut Running, control: &Control, n: u64) -> LedgerSnapshot {
    wait_until("every event is delivered", || run.handle.ledger().delivered == n);
    run.shutdown();
    let ledger = run.handle.ledger();
    assert_balanced(&ledger);
    let seqs = assert_each_delivered_once(control, 0..n);
    assert_eq!(seqs.len() as u64, ledger.accepted, "one seq per accepted event");
    ledger
}

#[test]
fn sink_panics_lose_nothing_and_retry_the_batch_in_flight() {
    let control = Control::new();
    control.script([Step::Deliver, Step::Panic, Step::Deliver, Step::Panic, Step::Panic]);
    let mut run = start(fast_config(), &control);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let run = &run;
            s.spawn(move || run.emit_all(t * 500..(t + 1) * 500));
        }
    });
    let ledger = settle(&mut run, &control, 2000);
    assert_eq!(ledger.delivered, 2000);
    assert!(ledger.restarts >= 3, "{ledger:?}");
    assert!(control.builds() >= 4, "each restart builds a fresh sink");
    // The batch a panic interrupted came back with the same key and events.
    let attempts = control.attempts();
    for panicked in attempts.iter().filter(|a| a.outcome == "panic") {
        let retried = attempts
            .iter()
            .find(|a| a.key == panicked.key && a.outcome == "delivered")
            .expect("the interrupted batch is delivered later");
        assert_eq!(retried.seqs, panicked.seqs);
    }
    assert_eq!(ledger.last_error.map(|e| e.kind), Some("panic".to_owned()));
}

#[test]
fn fatal_restarts_the_batcher_with_a_fresh_sink() {
    let control = Control::new();
    control.script([Step::Fatal, Step::Fatal]);
    let mut run = start(fast_config(), &control);
    run.emit_all(0..300);
    let ledger = settle(&mut run, &control, 300);
    assert!(ledger.restarts >= 2, "{ledger:?}");
    assert!(control.builds() >= 3);
    let fatal = control.attempts().into_iter().filter(|a| a.outcome == "fatal").collect::<Vec<_>>();
    assert_eq!(fatal.len(), 2);
    assert!(control.delivered().iter().any(|a| a.key == fatal[0].key), "the failed batch is kept and delivered");
    assert_eq!(ledger.last_error.map(|e| e.kind), Some("fatal".to_owned()));
}

#[test]
fn a_failing_sink_factory_does_not_stop_the_tree_from_starting() {
    let control = Control::new();
    control.fail_builds(3);
    let mut run = start(fast_config(), &control);
    run.emit_all(0..100);
    let ledger = settle(&mut run, &control, 100);
    assert!(control.builds() >= 4);
    assert!(ledger.restarts >= 3, "{ledger:?}");
}

#[derive(Debug, Clone)]
struct Fragile {
    id: u64,
}

impl Serialize for Fragile {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.id % 100 == 42 {
            panic!("cannot serialize event {}", self.id);
        }
        #[derive(Serialize)]
        struct Plain {
            id: u64,
        }
        Plain { id: self.id }.serialize(s)
    }
}

#[test]
fn a_panicking_serializer_drops_only_its_own_event() {
    let control = Control::new();
    let (emitter, spec, handle) = EventPipeline::builder(fast_config())
        .sink(control.factory())
        .restart_backoff(Backoff::exponential(Duration::from_millis(5), Duration::from_millis(50)))
        .build()
        .unwrap();
    let system = Supervisor::builder().child(spec).start().unwrap();
    for id in 0..300 {
        emitter.emit(Fragile { id }).unwrap();
    }
    wait_until("all but the fragile events are delivered", || handle.ledger().delivered == 297);
    system.shutdown().unwrap();
    let ledger = handle.ledger();
    assert_balanced(&ledger);
    assert_eq!((ledger.dropped.encode, ledger.pending), (3, 0));
    assert_eq!(ledger.restarts, 3);
    assert_each_delivered_once(&control, (0..300).filter(|i| i % 100 != 42));
}

/// Issue 13: a sink call that never returns is a hang. The watchdog replaces
/// the batcher on a fresh thread; the next incarnation re-sends the batch in
/// flight under the same key; the hung call's late answer changes nothing.
#[test]
fn a_hung_sink_is_replaced_by_the_watchdog_and_its_batch_resent() {
    vigil_testkit::init_logging();
    let control = Control::new();
    control.script([Step::Hang]);
    let (emitter, spec, handle) = EventPipeline::builder(fast_config())
        .sink(control.factory())
        .restart_backoff(Backoff::exponential(Duration::from_millis(5), Duration::from_millis(50)))
        .hang_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let system = Supervisor::builder().child(spec).start().unwrap();
    let events = system.subscribe();
    for id in 0..300 {
        emitter.emit(Ev { id }).expect("accepted");
    }
    wait_until("every event is delivered by the replacement", || handle.ledger().delivered == 300);
    let hung: Vec<_> = events
        .try_iter()
        .filter(|e| matches!(e, vigil_core::SupervisionEvent::Hung { path, .. } if path == "root/events/batcher"))
        .collect();
    assert_eq!(hung.len(), 1, "{hung:?}");
    let first = control.attempts().into_iter().next().expect("the hung attempt");
    let resent = control.delivered().into_iter().find(|a| a.key == first.key).expect("the hung batch, re-sent");
    assert_eq!(resent.seqs, first.seqs, "same key, same events");

    // The hung call returns now, reporting a delivery: nothing changes.
    let before = handle.ledger();
    control.open_gate();
    wait_until("the late return", || system.stats().late_returns == 1);
    let after = handle.ledger();
    assert_eq!((after.delivered, after.accepted, after.restarts), (before.delivered, before.accepted, before.restarts));
    assert_balanced(&after);
    let report = system.shutdown().expect("the tree shuts down");
    assert!(report.is_clean(), "no thread left: {report:?}");
    assert_eq!(handle.ledger().delivered, 300);
}

/// Issue 14: a fixed cause (a rewritten trust file, say) must not wait for
/// the end of a long restart backoff. `wake` restarts the waiting batcher now.
#[test]
fn wake_ends_a_long_restart_backoff() {
    vigil_testkit::init_logging();
    let control = Control::new();
    control.script([Step::Fatal]);
    let (emitter, spec, handle) = EventPipeline::builder(fast_config())
        .sink(control.factory())
        .restart_backoff(Backoff::exponential(Duration::from_secs(60), Duration::from_secs(60)))
        .build()
        .expect("valid pipeline");
    let system = Supervisor::builder().child(spec).start().expect("the tree starts");
    emitter.emit(Ev { id: 0 }).expect("accepted");
    wait_until("the delivery fails as fatal", || control.attempts().iter().any(|a| a.outcome == "fatal"));
    // Waiting out 60 s: nothing is delivered, and waking it starts it now.
    assert_eq!(handle.ledger().delivered, 0);
    wait_until("the waiting batcher is restarted by wake", || handle.wake());
    wait_until("the event is delivered long before the backoff ends", || handle.ledger().delivered == 1);
    assert_eq!(handle.ledger().restarts, 1);
    assert_eq!(control.builds(), 2, "one sink before the failure, one after the wake");
    // Running now: waking only nudges.
    assert!(!handle.wake());
    system.shutdown().expect("clean shutdown");
    assert_balanced(&handle.ledger());
}
