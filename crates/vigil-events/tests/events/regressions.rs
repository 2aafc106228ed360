//! Issue 10 (events): each test names what it protects and failed on the code
//! before the fix (commit cf373c4).

use crate::support;

use std::time::{Duration, Instant};

use serde::Serialize;
use support::*;
use vigil_core::{Backoff, Supervisor};
use vigil_events::{BuildError, Config, ConfigError, EventPipeline, FlushError, MAX_BUFFER_BYTES, MAX_CAPACITY};

// Item 13: every duration that validation accepts works.

#[test]
fn durations_at_their_maximum_deliver_without_restarting_the_batcher() {
    type Setter = fn(Config) -> Config;
    let cases: [(&str, Setter); 4] = [
        ("max_batch_age", |c| c.max_batch_age(Duration::MAX)),
        ("max_delay", |c| c.max_delay(Duration::MAX)),
        ("summary_interval", |c| c.summary_interval(Duration::MAX)),
        ("shutdown_timeout", |c| c.shutdown_timeout(Duration::MAX)),
    ];
    for (field, set) in cases {
        let config = set(fast_config());
        assert_eq!(config.validate(), Ok(()), "{field}: validation accepts it");
        let control = Control::new();
        // One retry, so the retry schedule and expiry are computed too.
        control.script([Step::Retry(None)]);
        let mut run = start(config, &control);
        run.emit_all(0..50);
        let flushed = run.handle.flush(Duration::from_secs(10));
        let ledger = run.handle.ledger();
        assert!(flushed.is_ok(), "{field}: {flushed:?}");
        assert_eq!((ledger.delivered, ledger.restarts), (50, 0), "{field}: {ledger:?}");
        run.emit_all(50..60);
        run.shutdown();
        // The batcher or the final flush delivers the last ten.
        let report = run.handle.final_report().unwrap_or_else(|| panic!("{field}: the final flush ran"));
        assert_eq!(report.pending, 0, "{field}: {report}");
        let ledger = run.handle.ledger();
        assert_eq!((ledger.delivered, ledger.restarts), (60, 0), "{field}: {ledger:?}");
        assert_balanced(&ledger);
    }
}

#[test]
fn sizes_at_their_maximum_do_not_overflow() {
    let config = fast_config().initial_record_estimate(usize::MAX).max_batch_bytes(usize::MAX);
    assert_eq!(config.validate(), Ok(()));
    let control = Control::new();
    let mut run = start(config, &control);
    run.emit_all(0..50);
    let report = run.handle.flush(DEADLINE).expect("flushed");
    assert_eq!((report.ledger.delivered, report.ledger.restarts), (50, 0));
    run.shutdown();
    assert_balanced(&run.handle.ledger());
}

#[test]
fn a_retry_after_of_duration_max_expires_the_batch_without_restarting_the_batcher() {
    let control = Control::new();
    control.script([Step::Retry(Some(Duration::MAX))]);
    let mut run = start(fast_config().max_batch_events(10), &control);
    run.emit_all(0..10);
    wait_until("the batch is accounted for", || {
        let l = run.handle.ledger();
        l.is_balanced() && l.pending == 0
    });
    let ledger = run.handle.ledger();
    assert_eq!((ledger.dropped.expired, ledger.restarts), (10, 0), "{ledger:?}");
    assert_eq!(ledger.last_error.map(|e| e.kind), Some("retryable".to_owned()));
    run.emit_all(10..20);
    run.handle.flush(DEADLINE).expect("the next batch goes");
    run.shutdown();
    assert_eq!(run.handle.ledger().delivered, 10);
}

// Item 14: a slow sink factory never fails the application's start, and an
// abandoned incarnation never touches the pipeline again.

#[test]
fn a_sink_factory_slower_than_the_start_timeout_does_not_fail_the_start() {
    let control = Control::new();
    control.hold_builds(1);
    let started = Instant::now();
    let (emitter, spec, handle) =
        EventPipeline::builder(fast_config()).sink(control.factory()).build().expect("valid pipeline");
    let system = Supervisor::builder().child(spec).start();
    let took = started.elapsed();
    // Let the factory go whatever happened, so no thread is left waiting.
    let unblock = scopeguard(|| control.open_gate());
    let system = system.expect("the tree starts while the sink factory is still running");
    assert!(took < Duration::from_secs(4), "the start took {took:?}");
    for id in 0..10 {
        emitter.emit(Ev { id }).unwrap();
    }
    // A sink that is not built yet is a delivery outage.
    let err = handle.flush(Duration::from_millis(200)).expect_err("no sink yet");
    assert!(matches!(err, FlushError::Timeout(_)), "{err:?}");
    assert_eq!(err.report().pending, 10);
    drop(unblock);
    let report = handle.flush(DEADLINE).expect("delivered once the sink is built");
    assert_eq!((report.ledger.delivered, report.ledger.restarts), (10, 0));
    let shutdown = system.shutdown().expect("clean shutdown");
    assert!(shutdown.is_clean(), "{shutdown:?}");
    assert_eq!(control.builds(), 1);
    assert_each_delivered_once(&control, 0..10);
}

#[test]
fn shutdown_while_the_sink_factory_hangs_is_prompt_and_settles_the_events() {
    let control = Control::new();
    control.hold_builds(1);
    let config = fast_config().shutdown_timeout(Duration::from_millis(500));
    let (emitter, spec, handle) =
        EventPipeline::builder(config).sink(control.factory()).build().expect("valid pipeline");
    let system = Supervisor::builder().child(spec).start();
    let unblock = scopeguard(|| control.open_gate());
    let system = system.expect("the tree starts while the sink factory is still running");
    for id in 0..10 {
        emitter.emit(Ev { id }).unwrap();
    }
    handle.close();
    let asked = Instant::now();
    let shutdown = system.shutdown().expect("clean shutdown");
    let took = asked.elapsed();
    // Not abandoned: it stopped within its budget (500 ms) plus 1 s.
    assert!(shutdown.is_clean(), "the batcher is not abandoned: {shutdown:?}");
    let report = handle.final_report().expect("the final flush ran");
    assert_eq!((report.dropped.shutdown, report.pending), (10, 0), "{report}");
    let ledger = handle.ledger();
    drop(unblock);
    wait_until("the factory returned", || control.builds() == 1);
    assert_eq!(handle.ledger(), ledger, "nothing moves after shutdown");
    assert_balanced(&ledger);
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
}

#[test]
fn an_incarnation_abandoned_at_shutdown_never_touches_the_pipeline_again() {
    let control = Control::new();
    // The first delivery ignores its budget and blocks until the gate opens.
    control.script([Step::Hang]);
    let config = fast_config().max_batch_events(10).shutdown_timeout(Duration::from_millis(200));
    let mut run = start(config, &control);
    run.emit_all(0..10);
    wait_until("the sink hangs", || control.inside() == 1);
    run.emit_all(10..20);
    run.handle.close();
    let unblock = scopeguard(|| control.open_gate());
    let system = run.system.take().unwrap();
    let shutdown = system.shutdown().expect("shutdown completes");
    assert_eq!(shutdown.abandoned, ["root/events/batcher"]);
    // The pipeline settled without the stuck batcher: closed, so nothing is
    // left pending.
    let report = run.handle.final_report().expect("the pipeline settled although its batcher was abandoned");
    assert_eq!((report.delivered, report.dropped.shutdown, report.pending), (0, 20, 0), "{report}");
    let settled = run.handle.ledger();
    assert_balanced(&settled);
    drop(unblock);
    wait_until("the stuck delivery returned", || control.inside() == 0 && control.attempts().len() == 1);
    // The abandoned incarnation comes back and must leave everything alone.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_millis(300) {
        assert_eq!(run.handle.ledger(), settled, "the ghost touched the ledger");
        assert_eq!(run.handle.final_report(), Some(report.clone()), "the ghost touched the final report");
        assert_eq!(control.attempts().len(), 1, "the ghost called the sink again");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// Item 15: a flush in progress yields to shutdown.

#[test]
fn shutdown_interrupts_a_flush_and_no_sink_call_follows_it() {
    let control = Control::new();
    control.set_default(Step::Retry(None));
    let config = fast_config()
        .max_delay(Duration::from_secs(3600))
        .retry_backoff_min(Duration::from_millis(20))
        .retry_backoff_max(Duration::from_millis(50))
        .shutdown_timeout(Duration::from_millis(300));
    let mut run = start(config, &control);
    run.settle_timer();
    run.emit_all(0..10);
    let system = run.system.take().unwrap();
    let (flushed, shutdown, took) = std::thread::scope(|s| {
        let flush = s.spawn(|| run.handle.flush(Duration::from_secs(10)));
        wait_until("the flush keeps retrying", || control.attempts().len() >= 3);
        let asked = Instant::now();
        let shutdown = system.shutdown();
        let flushed = flush.join().unwrap();
        (flushed, shutdown, asked.elapsed())
    });
    let shutdown = shutdown.expect("shutdown completes");
    assert!(shutdown.is_clean(), "the batcher stopped instead of being abandoned: {shutdown:?}");
    assert!(took < Duration::from_secs(5), "shutdown and the flush ended after {took:?}");
    let err = flushed.expect_err("the flush could not deliver");
    assert!(matches!(err, FlushError::Closed(_)), "the flush says the batcher stopped: {err:?}");
    // The batcher's thread has ended (not abandoned): no call can follow.
    let calls = control.attempts().len();
    let report = run.handle.final_report().expect("the final flush ran");
    assert_eq!(report.pending, 10, "{report}");
    assert_eq!(control.attempts().len(), calls);
    assert_balanced(&run.handle.ledger());
}

#[test]
fn a_flush_waiting_on_an_abandoned_delivery_returns_once_the_pipeline_is_settled() {
    let control = Control::new();
    // Deliveries honour their budget (the flush's 20 s) but the gate stays shut.
    control.set_default(Step::Wait);
    let config = fast_config().max_delay(Duration::from_secs(3600)).shutdown_timeout(Duration::from_millis(200));
    let mut run = start(config, &control);
    run.settle_timer();
    run.emit_all(0..10);
    let system = run.system.take().unwrap();
    let unblock = scopeguard(|| control.open_gate());
    let (flushed, took, shutdown) = std::thread::scope(|s| {
        let flush = s.spawn(|| {
            let asked = Instant::now();
            (run.handle.flush(Duration::from_secs(20)), asked.elapsed())
        });
        wait_until("the flush's delivery is in the sink", || control.inside() == 1);
        let shutdown = system.shutdown();
        let (flushed, took) = flush.join().unwrap();
        (flushed, took, shutdown)
    });
    drop(unblock);
    let shutdown = shutdown.expect("shutdown completes");
    assert_eq!(shutdown.abandoned, ["root/events/batcher"], "the delivery outlasted the shutdown timeout");
    assert!(took < Duration::from_secs(10), "the flush waited {took:?} for an abandoned batcher");
    let err = flushed.expect_err("nothing was delivered");
    assert!(matches!(err, FlushError::Closed(_)), "{err:?}");
    assert_eq!(err.report().pending, 10);
}

// Item 16: close() and then shutdown during a restart backoff leave nothing pending.

#[test]
fn close_then_shutdown_during_a_restart_backoff_drops_the_pending_events_as_shutdown() {
    let control = Control::new();
    control.script([Step::Fatal]);
    let (emitter, spec, handle) = EventPipeline::builder(fast_config().max_batch_events(10))
        .sink(control.factory())
        // The batcher stays down for a long while after its first failure.
        .restart_backoff(Backoff::exponential(Duration::from_secs(60), Duration::from_secs(60)))
        .build()
        .expect("valid pipeline");
    let system = Supervisor::builder().child(spec).start().expect("the tree starts");
    for id in 0..10 {
        emitter.emit(Ev { id }).unwrap();
    }
    wait_until("the batcher failed", || handle.ledger().last_error.is_some_and(|e| e.kind == "fatal"));
    for id in 10..15 {
        emitter.emit(Ev { id }).unwrap();
    }
    handle.close();
    let asked = Instant::now();
    let shutdown = system.shutdown().expect("clean shutdown");
    assert!(shutdown.is_clean(), "{shutdown:?}");
    assert!(asked.elapsed() < Duration::from_secs(10), "shutdown took {:?}", asked.elapsed());
    let ledger = handle.ledger();
    assert_balanced(&ledger);
    assert_eq!((ledger.pending, ledger.dropped.shutdown, ledger.delivered), (0, 15, 0), "{ledger:?}");
    let report = handle.final_report().expect("the final tally is kept");
    assert_eq!((report.dropped.shutdown, report.pending), (15, 0), "{report}");
}

// Item 11: a buffer capacity that would abort the allocation is refused.

/// A 1 KiB event.
#[derive(Debug, Clone, Serialize)]
struct Big {
    #[serde(skip)]
    _bytes: [u8; 1024],
}

#[test]
fn a_buffer_too_large_to_allocate_is_refused_with_a_typed_error() {
    let control = Control::new();
    let config = Config::default().capacity(MAX_CAPACITY);
    let err = EventPipeline::builder::<Big>(config)
        .sink(control.factory())
        .build()
        .expect_err("16 Mi slots of 1 KiB events are refused before allocating");
    let BuildError::Config(ConfigError::BufferTooLarge { capacity, slot_bytes, max_bytes }) = err.clone() else {
        panic!("expected BufferTooLarge, got {err:?}");
    };
    assert_eq!((capacity, max_bytes), (MAX_CAPACITY, MAX_BUFFER_BYTES));
    assert!(slot_bytes > 1024, "the slot holds the event: {slot_bytes}");
    assert!(err.to_string().contains("capacity"), "{err}");
    // The same events in a buffer that fits are fine.
    let fits = MAX_BUFFER_BYTES / slot_bytes;
    assert!(fits >= 4096);
    let built = EventPipeline::builder::<Big>(Config::default().capacity(4096)).sink(control.factory()).build();
    assert!(built.is_ok(), "{:?}", built.err());
}

/// Runs `f` when dropped (also when an assertion fails first).
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}
