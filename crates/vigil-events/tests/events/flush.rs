//! Flush with a deadline, and the final flush at shutdown.

use crate::support;

use std::time::{Duration, Instant};

use support::*;
use vigil_events::{Dropped, FlushError};

/// Timings where only flush and shutdown move partial batches (once the
/// batcher has seen the buffer empty: see [`Running::settle_timer`]).
fn slow_timer() -> vigil_events::Config {
    fast_config().max_delay(Duration::from_secs(3600))
}

#[test]
fn flush_delivers_everything_queued() {
    let control = Control::new();
    let mut run = start(slow_timer(), &control);
    run.emit_all(0..1000);
    let report = run.handle.flush(Duration::from_secs(20)).expect("flushed");
    assert_eq!(report.pending, 0);
    assert_eq!(report.ledger.delivered, 1000);
    run.shutdown();
    assert_balanced(&run.handle.ledger());
    assert_each_delivered_once(&control, 0..1000);
}

#[test]
fn flush_with_a_deadline_while_a_delivery_is_in_flight() {
    let control = Control::new();
    // The first delivery blocks until the gate opens (within its 30 s budget).
    control.script([Step::Wait]);
    let mut run = start(slow_timer().max_batch_events(1), &control);
    run.emit_all(0..1);
    wait_until("a delivery is in flight", || control.inside() == 1);
    run.emit_all(1..100);

    let started = Instant::now();
    let err = run.handle.flush(Duration::from_millis(300)).expect_err("the deadline passes first");
    let took = started.elapsed();
    let FlushError::Timeout(report) = err else { panic!("expected a timeout, got {err:?}") };
    assert!(took < Duration::from_secs(10), "flush returned after {took:?}");
    assert_eq!((report.pending, report.delivered), (100, 0));
    assert_eq!((report.ledger.in_flight, report.ledger.queued), (1, 99));
    assert_balanced(&report.ledger);

    control.open_gate();
    let report = run.handle.flush(Duration::from_secs(20)).expect("flushed");
    assert_eq!((report.pending, report.ledger.delivered), (0, 100));
    run.shutdown();
    assert_balanced(&run.handle.ledger());
    assert_each_delivered_once(&control, 0..100);
}

#[test]
fn flush_hands_the_sink_what_is_left_of_its_deadline() {
    let control = Control::new();
    // Deliveries wait for a gate that never opens, up to their budget.
    control.set_default(Step::Wait);
    let mut run = start(slow_timer().delivery_timeout(Some(Duration::from_secs(60))), &control);
    // Else the batcher may ship the events itself, with its 60 s budget.
    run.settle_timer();
    run.emit_all(0..10);
    // Generous, so that even a batcher scheduled late tries before it ends.
    let timeout = Duration::from_secs(2);
    let err = run.handle.flush(timeout).expect_err("nothing can be delivered");
    let report = err.into_report();
    assert_eq!(report.pending, 10);
    let budgets: Vec<Duration> = control.attempts().iter().filter_map(|a| a.budget).collect();
    assert!(!budgets.is_empty());
    assert!(budgets.iter().all(|b| *b <= timeout), "budgets {budgets:?} within {timeout:?}");
    control.set_default(Step::Deliver);
    control.open_gate();
    run.shutdown();
    assert_balanced(&run.handle.ledger());
}

#[test]
fn flush_skips_the_batchers_own_backoff() {
    let control = Control::new();
    control.script([Step::Retry(None)]);
    // After one failure the batcher would wait at least 10 s.
    let config = slow_timer().retry_backoff_min(Duration::from_secs(20)).retry_backoff_max(Duration::from_secs(20));
    let mut run = start(config.max_batch_events(10), &control);
    run.emit_all(0..10);
    wait_until("the first attempt failed", || control.attempts().len() == 1);
    let report = run.handle.flush(Duration::from_secs(5)).expect("flushed at once");
    assert_eq!(report.delivered, 10);
    assert_eq!(report.ledger.retries, 1);
    run.shutdown();
    assert_balanced(&run.handle.ledger());
}

#[test]
fn shutdown_delivers_what_is_queued() {
    let control = Control::new();
    let mut run = start(slow_timer(), &control);
    // Else the batcher may deliver them before the final flush does.
    run.settle_timer();
    run.emit_all(0..10);
    run.shutdown();
    let report = run.handle.final_report().expect("the final flush ran");
    assert_eq!((report.delivered, report.pending), (10, 0));
    assert_balanced(&run.handle.ledger());
    assert_each_delivered_once(&control, 0..10);
}

#[test]
fn shutdown_leaves_undeliverable_events_pending_unless_closed() {
    for close in [false, true] {
        let control = Control::new();
        // Within max_batch_age (60 s), so the batch is kept, not expired.
        control.set_default(Step::Retry(Some(Duration::from_secs(30))));
        let config = slow_timer().max_batch_events(10).shutdown_timeout(Duration::from_millis(300));
        let mut run = start(config, &control);
        run.emit_all(0..50);
        wait_until("a delivery failed", || !control.attempts().is_empty());
        if close {
            run.handle.close();
            assert!(matches!(run.emitter.emit(Ev { id: 99 }), Err(Dropped::Closed(_))));
        }
        let took = run.shutdown();
        assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
        let report = run.handle.final_report().expect("the final flush ran");
        let ledger = run.handle.ledger();
        assert_balanced(&ledger);
        assert_eq!(report.delivered, 0);
        if close {
            assert_eq!((report.pending, report.dropped.shutdown), (0, 50));
            assert_eq!(ledger.dropped.shutdown, 51, "the refused emit counts too");
        } else {
            assert_eq!((report.pending, report.dropped.total()), (50, 0));
        }
    }
}

#[test]
fn flush_after_shutdown_is_disconnected() {
    let control = Control::new();
    let mut run = start(fast_config(), &control);
    run.emit_all(0..5);
    run.shutdown();
    let err = run.handle.flush(Duration::from_secs(1)).expect_err("no batcher");
    assert!(matches!(err, FlushError::Closed(_)), "{err:?}");
    assert_eq!(err.report().pending, 0);
    assert_balanced(&run.handle.ledger());
}

#[test]
fn the_shutdown_budget_covers_the_final_flush() {
    // The pipeline is one child spec: its supervisor's shutdown timeout, the
    // final flush's deadline plus 2 s, caps its batcher (the deadline plus
    // 1 s) and finalizer, so a tree's budget holds the flush as it is.
    let control = Control::new();
    let config = fast_config().shutdown_timeout(Duration::from_secs(7));
    let mut run = start(config, &control);
    let budget = run.system.as_ref().expect("running").shutdown_budget();
    assert_eq!(budget.children, [("root/events".to_owned(), Some(Duration::from_secs(9)))]);
    assert_eq!(budget.total, Some(Duration::from_secs(9) + vigil_core::SHUTDOWN_SLACK_PER_CHILD));
    // A flush deadline that waits forever makes the budget unbounded.
    let forever = vigil_events::EventPipeline::builder::<Ev>(fast_config().shutdown_timeout(Duration::MAX))
        .sink(control.factory())
        .build()
        .expect("valid pipeline")
        .1;
    assert_eq!(vigil_core::Supervisor::builder().child(forever).shutdown_budget().total, None);
    run.shutdown();
}
