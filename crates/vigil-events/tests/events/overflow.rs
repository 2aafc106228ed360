//! A full buffer under both overflow policies, with the batcher stuck in a
//! delivery: exact counts.

use crate::support;

use std::collections::BTreeSet;

use support::*;
use vigil_events::{Dropped, OverflowPolicy};

/// Starts a pipeline whose first delivery (of event 0 alone) hangs.
fn stuck(policy: vigil_events::OverflowPolicy) -> (std::sync::Arc<Control>, Running) {
    let control = Control::new();
    control.script([Step::Hang]);
    let run = start(fast_config().capacity(100).max_batch_events(10).overflow(policy), &control);
    run.emit_all(0..1);
    wait_until("the sink holds event 0", || control.inside() == 1);
    (control, run)
}

#[test]
fn drop_newest_refuses_exactly_what_does_not_fit() {
    let (control, mut run) = stuck(OverflowPolicy::DropNewest);
    let mut refused = BTreeSet::new();
    for id in 1..151 {
        match run.emitter.emit(Ev { id }) {
            Ok(()) => {}
            Err(Dropped::Full(ev)) => assert!(refused.insert(ev.id)),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(refused, (101..151).collect());
    let ledger = run.handle.ledger();
    assert_eq!((ledger.accepted, ledger.queued, ledger.in_flight, ledger.dropped.queue_full), (151, 100, 1, 50));
    assert_balanced(&ledger);

    control.open_gate();
    wait_until("the backlog is delivered", || run.handle.ledger().delivered == 101);
    run.shutdown();
    assert_balanced(&run.handle.ledger());
    assert_each_delivered_once(&control, 0..101);
}

#[test]
fn drop_oldest_evicts_exactly_the_oldest() {
    let (control, mut run) = stuck(OverflowPolicy::DropOldest);
    run.emit_all(1..151);
    let ledger = run.handle.ledger();
    assert_eq!((ledger.accepted, ledger.queued, ledger.in_flight, ledger.dropped.oldest_evicted), (151, 100, 1, 50));
    assert_balanced(&ledger);

    control.open_gate();
    wait_until("the backlog is delivered", || run.handle.ledger().delivered == 101);
    run.shutdown();
    assert_balanced(&run.handle.ledger());
    // Event 0 was already in flight; 1..51 were evicted.
    assert_each_delivered_once(&control, std::iter::once(0).chain(51..151));
}
