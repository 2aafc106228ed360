//! Delivery results end to end: retryable with retry-after, too large,
//! rejected, expired; batch bounds and encodings.

use crate::support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::*;
use vigil_events::Encoding;

#[test]
fn retryable_with_retry_after_keeps_the_batch_and_waits() {
    let control = Control::new();
    let retry_after = Duration::from_millis(300);
    control.script([Step::Retry(Some(retry_after)), Step::Retry(None), Step::Retry(Some(retry_after))]);
    let mut run = start(fast_config(), &control);
    run.emit_all(0..200);
    wait_until("everything is delivered", || run.handle.ledger().delivered == 200);
    run.shutdown();
    let ledger = run.handle.ledger();
    assert_balanced(&ledger);
    assert_each_delivered_once(&control, 0..200);
    let attempts = control.attempts();
    let first = &attempts[0];
    let same: Vec<_> = attempts.iter().filter(|a| a.key == first.key).collect();
    assert_eq!(same.len(), 4, "three failures, then delivered under the same key");
    assert!(same.iter().all(|a| a.seqs == first.seqs));
    assert!(same[1].at - same[0].at >= retry_after, "retry-after honoured: {:?}", same[1].at - same[0].at);
    assert!(same[3].at - same[2].at >= retry_after);
    assert_eq!(ledger.retries, 3);
    assert_eq!(ledger.last_error.map(|e| e.kind), Some("retryable".to_owned()));
}

#[test]
fn too_large_batches_are_split_until_they_fit() {
    let control = Control::new();
    control.set_default(Step::TooLargeAbove(5));
    let mut run = start(fast_config().max_batch_events(40), &control);
    run.emit_all(0..400);
    wait_until("everything is delivered", || run.handle.ledger().delivered == 400);
    run.shutdown();
    let ledger = run.handle.ledger();
    assert_balanced(&ledger);
    assert_each_delivered_once(&control, 0..400);
    assert!(control.delivered().iter().all(|a| a.seqs.len() <= 5));
    assert!(ledger.splits > 0);
    let keys: BTreeSet<_> = control.delivered().into_iter().map(|a| a.key).collect();
    assert_eq!(keys.len(), control.delivered().len(), "every half has a key of its own");
}

#[test]
fn a_single_event_the_receiver_finds_too_large_is_dropped() {
    let control = Control::new();
    control.set_default(Step::TooLargeAbove(0));
    let mut run = start(fast_config().max_batch_events(8), &control);
    run.emit_all(0..8);
    wait_until("every event is resolved", || run.handle.ledger().dropped.too_large == 8);
    run.shutdown();
    let ledger = run.handle.ledger();
    assert_balanced(&ledger);
    assert_eq!((ledger.delivered, ledger.dropped.too_large), (0, 8));
}

#[test]
fn rejected_batches_are_dropped_and_counted_the_rest_delivered() {
    let control = Control::new();
    control.script([Step::Deliver, Step::Reject, Step::Deliver, Step::Reject]);
    let mut run = start(fast_config(), &control);
    run.emit_all(0..500);
    wait_until("every event is resolved", || {
        let l = run.handle.ledger();
        l.delivered + l.dropped.rejected == 500
    });
    run.shutdown();
    let ledger = run.handle.ledger();
    assert_balanced(&ledger);
    let rejected: BTreeSet<u64> =
        control.attempts().into_iter().filter(|a| a.outcome == "rejected").flat_map(|a| a.ids).collect();
    assert_eq!(ledger.dropped.rejected, rejected.len() as u64);
    assert!(!rejected.is_empty());
    assert_each_delivered_once(&control, (0..500).filter(|i| !rejected.contains(i)));
}

#[test]
fn a_batch_failing_past_its_max_age_expires() {
    let control = Control::new();
    control.set_default(Step::Retry(None));
    let config = fast_config().max_batch_age(Duration::from_millis(300)).retry_backoff_max(Duration::from_millis(50));
    let mut run = start(config, &control);
    run.emit_all(0..10);
    wait_until("the batch expires", || run.handle.ledger().dropped.expired == 10);
    run.shutdown();
    let ledger = run.handle.ledger();
    assert_balanced(&ledger);
    assert_eq!(ledger.delivered, 0);
    let attempts = control.attempts();
    let span = attempts.last().unwrap().at - attempts[0].at;
    assert!(span < Duration::from_millis(300), "no attempt after the batch's max age: {span:?}");
}

#[test]
fn batches_respect_event_and_byte_bounds_in_both_encodings() {
    for encoding in [Encoding::Ndjson, Encoding::JsonArray] {
        let control = Control::new();
        let config = fast_config().encoding(encoding).max_batch_events(50).max_batch_bytes(1000);
        let mut run = start(config, &control);
        run.emit_all(0..1000);
        wait_until("everything is delivered", || run.handle.ledger().delivered == 1000);
        run.shutdown();
        assert_balanced(&run.handle.ledger());
        assert_each_delivered_once(&control, 0..1000);
        for a in control.delivered() {
            assert!(a.seqs.len() <= 50, "{} events", a.seqs.len());
            assert!(a.bytes <= 1000, "{} bytes", a.bytes);
        }
        // ~40-byte records: the byte bound, not the event bound, cut the batches.
        assert!(control.delivered().iter().any(|a| a.bytes > 900));
    }
}
