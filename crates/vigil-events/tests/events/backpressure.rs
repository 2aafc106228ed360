//! Request threads never wait: eight producers keep emitting while the sink
//! hangs forever, and shutdown still returns within its budget with every
//! event accounted for.

use crate::support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::*;
use vigil_events::OverflowPolicy;

const PRODUCERS: u64 = 8;
const PER_PRODUCER: u64 = 20_000;
/// No single `emit` may take this long. A blocking emit would take forever.
const EMIT_BOUND: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    refused: u64,
    slow: u64,
}

fn produce(run: &Running) -> Tally {
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        for p in 0..PRODUCERS {
            let emitter = run.emitter.clone();
            let tx = tx.clone();
            s.spawn(move || {
                let mut t = Tally::default();
                for i in 0..PER_PRODUCER {
                    let started = Instant::now();
                    let result = emitter.emit(Ev { id: p * PER_PRODUCER + i });
                    if started.elapsed() > EMIT_BOUND {
                        t.slow += 1;
                    }
                    match result {
                        Ok(()) => t.ok += 1,
                        Err(d) => {
                            assert!(d.is_full(), "{d:?}");
                            t.refused += 1;
                        }
                    }
                }
                tx.send(t).unwrap();
            });
        }
        drop(tx);
        // Producers that blocked would never report: bound the wait.
        let mut total = Tally::default();
        for _ in 0..PRODUCERS {
            let t = rx.recv_timeout(DEADLINE).expect("a producer blocked in emit");
            total.ok += t.ok;
            total.refused += t.refused;
            total.slow += t.slow;
        }
        total
    })
}

fn hung(policy: OverflowPolicy) {
    let control = Control::new();
    control.set_default(Step::Hang);
    let config = fast_config().capacity(1000).overflow(policy).shutdown_timeout(Duration::from_millis(500));
    let mut run = start(config, &control);
    run.emit_all(0..1);
    wait_until("the sink hangs", || control.inside() == 1);

    let tally = produce(&run);
    assert_eq!(tally.slow, 0, "every emit returned within {EMIT_BOUND:?}");
    let ledger = run.handle.ledger();
    assert_eq!(ledger.accepted, 1 + PRODUCERS * PER_PRODUCER);
    assert_eq!(tally.ok + tally.refused, PRODUCERS * PER_PRODUCER);
    assert_eq!(ledger.queued, 1000);
    assert_eq!(ledger.in_flight, 1, "only event 0 is in the sink");
    match policy {
        OverflowPolicy::DropNewest => {
            assert_eq!(ledger.dropped.queue_full, tally.refused);
            assert_eq!(tally.ok, 1000);
        }
        OverflowPolicy::DropOldest => {
            assert_eq!(tally.refused, 0);
            assert_eq!(ledger.dropped.oldest_evicted, PRODUCERS * PER_PRODUCER - 1000);
        }
    }
    assert_balanced(&ledger);

    // The sink never returns: the supervisor abandons the batcher after the
    // final flush's budget plus its grace, and shutdown goes on.
    let took = run.shutdown();
    assert!(
        took < Duration::from_millis(500) + Duration::from_secs(2) + Duration::from_secs(3),
        "shutdown took {took:?}"
    );
    let ledger = run.handle.ledger();
    assert_eq!((ledger.delivered, ledger.pending, ledger.queued, ledger.in_flight), (0, 1001, 1000, 1));
    assert_eq!(ledger.dropped.total(), PRODUCERS * PER_PRODUCER - 1000);
    assert_balanced(&ledger);
    // The finalizer settled the pipeline without the stuck batcher; not
    // closed, so the events stay pending for a later batcher.
    let report = run.handle.final_report().expect("the pipeline is settled without the stuck batcher");
    assert_eq!((report.delivered, report.pending), (0, 1001));

    // Let the abandoned thread go: its delivery returns, but the pipeline is
    // no longer its own, so nothing changes.
    control.open_gate();
    wait_until("the stuck delivery returned", || control.attempts().len() == 1);
    assert_eq!(run.handle.ledger(), ledger);
    assert_eq!(run.handle.final_report(), Some(report));
}

#[test]
fn drop_newest_with_the_sink_hung_forever() {
    hung(OverflowPolicy::DropNewest);
}

#[test]
fn drop_oldest_with_the_sink_hung_forever() {
    hung(OverflowPolicy::DropOldest);
}
