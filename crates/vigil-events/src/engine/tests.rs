//! The engine on a manual clock with a scripted sink.

use super::*;
use crate::clock::manual::ManualClock;
use crate::config::OverflowPolicy;
use crate::sink::Encoding;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// What the scripted sink does on its next call.
#[derive(Debug, Clone)]
enum Act {
    Deliver,
    Retry(Option<Duration>),
    TooLarge,
    /// TooLarge when the batch holds more than this many events.
    MaxEvents(usize),
    Reject,
    /// Accepted, but this many of the batch's records refused.
    PartlyReject(u64),
    Fatal,
    Panic,
    /// Takes this long (on the manual clock), then delivers.
    Slow(Duration),
}

#[derive(Debug)]
struct Script {
    clock: Arc<ManualClock>,
    acts: VecDeque<Act>,
    default: Act,
    delivered: Vec<Batch>,
    budgets: Vec<Option<Duration>>,
    calls: usize,
}

impl Script {
    fn new(clock: &Arc<ManualClock>, acts: impl IntoIterator<Item = Act>) -> Script {
        Script {
            clock: Arc::clone(clock),
            acts: acts.into_iter().collect(),
            default: Act::Deliver,
            delivered: Vec::new(),
            budgets: Vec::new(),
            calls: 0,
        }
    }
}

impl Sink for Script {
    fn deliver(&mut self, batch: &Batch, budget: Option<Duration>) -> Delivery {
        self.calls += 1;
        self.budgets.push(budget);
        let act = self.acts.pop_front().unwrap_or_else(|| self.default.clone());
        let err = || -> BoxError { "scripted failure".into() };
        match act {
            Act::Deliver => {
                self.delivered.push(batch.clone());
                Delivery::Delivered
            }
            Act::Slow(d) => {
                self.clock.advance(d);
                self.delivered.push(batch.clone());
                Delivery::Delivered
            }
            Act::Retry(retry_after) => Delivery::Retryable { error: err(), retry_after },
            Act::TooLarge => Delivery::TooLarge { error: err() },
            Act::MaxEvents(n) if batch.len() > n => Delivery::TooLarge { error: err() },
            Act::MaxEvents(_) => {
                self.delivered.push(batch.clone());
                Delivery::Delivered
            }
            Act::Reject => Delivery::Rejected { error: err() },
            Act::PartlyReject(rejected) => Delivery::PartiallyRejected { rejected, error: err() },
            Act::Fatal => Delivery::Fatal { error: err() },
            Act::Panic => panic!("scripted sink panic"),
        }
    }
}

/// Keeps the scripted panics out of the test output; others still print.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info.payload().downcast_ref::<&str>().copied().unwrap_or("");
            if msg != "scripted sink panic" && msg != "serializer bomb" {
                previous(info);
            }
        }));
    });
}

/// The token the tests act with: nobody else claims the state.
const T: u64 = 0;

fn shared(config: Config) -> Shared<Value> {
    config.validate().unwrap();
    let s = Shared::new(config);
    s.state.lock().rng = 42;
    s
}

fn small() -> Config {
    Config::default()
        .capacity(100)
        .max_batch_events(10)
        .max_delay(Duration::from_secs(1))
        .retry_backoff_min(Duration::from_millis(100))
        .retry_backoff_max(Duration::from_secs(10))
        .max_batch_age(Duration::from_secs(60))
}

/// Emits `n` events `{"i": k}` and returns the seqs they got, read back
/// from the records the sink received.
fn emit(s: &Shared<Value>, range: Range<u64>) {
    for i in range {
        s.buffer.push(json!({ "i": i }), &s.ledger).unwrap();
    }
}

fn ids(batches: &[Batch]) -> Vec<u64> {
    let mut out = Vec::new();
    for b in batches {
        for line in b.body().split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_slice(line).unwrap();
            out.push(v["event"]["i"].as_u64().unwrap());
        }
    }
    out
}

fn balanced(s: &Shared<Value>) -> LedgerSnapshot {
    let snap = s.snapshot();
    assert!(snap.is_balanced(), "ledger out of balance: {snap:?}");
    snap
}

#[test]
fn waits_for_max_delay_then_ships_a_partial_batch() {
    let clock = Arc::new(ManualClock::new());
    let s = shared(small());
    let mut sink = Script::new(&clock, []);
    let t0 = clock.now();
    assert_eq!(s.step(&mut sink, &clock, &|| false, T).unwrap(), t0 + Duration::from_secs(1));
    emit(&s, 0..3);
    clock.advance(Duration::from_millis(400));
    // Not due yet: the queue was empty at t0.
    assert_eq!(s.step(&mut sink, &clock, &|| false, T).unwrap(), t0 + Duration::from_secs(1));
    assert_eq!(sink.calls, 0);
    clock.advance(Duration::from_millis(600));
    s.step(&mut sink, &clock, &|| false, T).unwrap();
    assert_eq!(ids(&sink.delivered), vec![0, 1, 2]);
    let snap = balanced(&s);
    assert_eq!((snap.delivered, snap.batches, snap.pending), (3, 1, 0));
}

#[test]
fn full_batches_ship_at_once_and_respect_max_events() {
    let clock = Arc::new(ManualClock::new());
    let s = shared(small());
    let mut sink = Script::new(&clock, []);
    s.step(&mut sink, &clock, &|| false, T).unwrap();
    emit(&s, 0..25);
    s.step(&mut sink, &clock, &|| false, T).unwrap();
    // Two full batches go; the remaining 5 wait for max_delay.
    assert_eq!(sink.delivered.iter().map(Batch::len).collect::<Vec<_>>(), vec![10, 10]);
    assert_eq!(balanced(&s).queued, 5);
    clock.advance(Duration::from_secs(1));
    s.step(&mut sink, &clock, &|| false, T).unwrap();
    assert_eq!(ids(&sink.delivered), (0..25).collect::<Vec<_>>());
    assert_eq!(balanced(&s).delivered, 25);
}

#[test]
fn batches_respect_max_bytes_and_carry_the_overflowing_record() {
    let clock = Arc::new(ManualClock::new());
    // Each record is ~45 bytes; 100 bytes hold two with their newlines.
    let s = shared(small().max_batch_bytes(100));
    let mut sink = Script::new(&clock, []);
    emit(&s, 0..5);
    clock.advance(Duration::from_secs(2));
    s.step(&mut sink, &clock, &|| false, T).unwrap();
    for b in &sink.delivered {
        assert!(b.body().len() <= 100, "{} bytes", b.body().len());
    }
    assert_eq!(sink.delivered.iter().map(Batch::len).collect::<Vec<_>>(), vec![2, 2, 1]);
    assert_eq!(ids(&sink.delivered), vec![0, 1, 2, 3, 4]);
    balanced(&s);
}

#[test]
fn a_record_larger_than_a_batch_is_dropped_as_too_large() {
    let clock = Arc::new(ManualClock::new());
    let s = shared(small().max_batch_bytes(60));
    let mut sink = Script::new(&clock, []);
    s.buffer.push(json!({"i": 0}), &s.ledger).unwrap();
    s.buffer.push(json!({"i": 1, "pad": "x".repeat(100)}), &s.ledger).unwrap();
    s.buffer.push(json!({"i": 2}), &s.ledger).unwrap();
    clock.advance(Duration::from_secs(2));
    s.step(&mut sink, &clock, &|| false, T).unwrap();
    assert_eq!(ids(&sink.delivered), vec![0, 2]);
    let snap = balanced(&s);
    assert_eq!((snap.delivered, snap.dropped.too_large), (2, 1));
}

#[test]
fn unserializable_events_are_dropped_and_the_rest_delivered() {
    use std::collections::BTreeMap;
    let clock = Arc::new(ManualClock::new());
    let s: Shared<BTreeMap<Vec<u8>, u8>> = Shared::new(small());
    let mut sink = Script::new(&clock, []);
    s.buffer.push(BTreeMap::new(), &s.ledger).unwrap();
    s.buffer.push(BTreeMap::from([(vec![1], 1)]), &s.ledger).unwrap();
    s.buffer.push(BTreeMap::new(), &s.ledger).unwrap();
    clock.advance(Duration::from_secs(2));
    s.step(&mut sink, &clock, &|| false, T).unwrap();
    let snap = s.snapshot();
    assert!(snap.is_balanced(), "{snap:?}");
    assert_eq!((snap.delivered, snap.dropped.encode), (2, 1));
    assert_eq!(snap.last_error.unwrap().kind, "encode");
    assert_eq!(sink.delivered[0].len(), 2);
}

#[test]
fn retryable_backs_off_exponentially_with_jitter_and_keeps_the_key() {
    let clock = Arc::new(ManualClock::new());
    let s = shared(small());
    let mut sink = Script::new(&clock, [Act::Retry(None), Act::Retry(None), Act::Retry(None)]);
    emit(&s, 0..3);
    clock.advance(Duration::from_secs(1));
    let mut delays = Vec::new();
    let mut keys = BTreeSet::new();
    for _ in 0..3 {
        let t = clock.now();
        let next = s.step(&mut sink, &clock, &|| false, T).unwrap();
        delays.push(next - t);
        keys.insert(s.state.lock().batches.front().unwrap().batch.idempotency_key().to_owned());
        // Waking early does nothing.
        assert_eq!(s.step(&mut sink, &clock, &|| false, T).unwrap(), next);
        clock.advance(next - t);
    }
    for (i, d) in delays.iter().enumerate() {
        let base = Duration::from_millis(100) * (1 << i);
        assert!(*d >= base / 2 && *d <= base, "attempt {i}: {d:?} outside [{:?}, {base:?}]", base / 2);
    }
    assert_eq!(keys.len(), 1, "the key is stable across retries");
    s.step(&mut sink, &clock, &|| false, T).unwrap();
    assert_eq!(ids(&sink.delivered), vec![0, 1, 2]);
    assert_eq!(sink.delivered[0].idempotency_key(), keys.first().unwrap());
    let snap = balanced(&s);
    assert_eq!((snap.attempts, snap.retries, snap.batches), (4, 3, 1));
    assert_eq!(snap.last_error.unwrap().kind, "retryable");
}

#[test]
fn retry_after_is_a_floor_for_the_backoff() {
    let clock = Arc::new(ManualClock::new());
    let s = shared(small());
    let mut sink = Script::new(&clock, [Act::Retry(Some(Duration::from_secs(7)))]);
    emit(&s, 0..1);
    clock.advance(Duration::from_secs(1));
    let t = clock.now();
    assert_eq!(s.step(&mut sink, &clock, &|| false, T).unwrap(), t + Duration::from_secs(7));
    clock.advance(Duration::from_millis(6999));
    s.step(&mut sink, &clock, &|| false, T).unwrap();
    assert_eq!(sink.calls, 1);
    clock.advance(Duration::from_millis(1));
    s.step(&mut sink, &clock, &|| false, T).unwrap();
    assert_eq!(sink.delivered.len(), 1);
    balanced(&s);
}

#[test]
fn backoff_is_capped() {
    let s = shared(small().retry_backoff_max(Duration::from_millis(400)));
    let mut st = s.state.lock();
    st.failures = 40;
    for _ in 0..100 {
        let d = s.backoff(&mut st);
        assert!(d >= Duration::from_millis(200) && d <= Duration::from_millis(400), "{d:?}");
    }
}

#[test]
fn a_batch_failing_past_max_age_expires() {
    let clock = Arc::new(ManualClock::new());
    let s = shared(small().max_batch_age(Duration::from_secs(2)).retry_backoff_max(Duration::from_millis(800)));
    let mut sink = Script::new(&clock, []);
    sink.default = Act::Retry(None);
    emit(&s, 0..4);
    clock.advance(Duration::from_secs(1));
    let mut guard = 0;
    while s.snapshot().dropped.expired == 0 {
        let next = s.step(&mut sink, &clock, &|| false, T).unwrap();
        clock.advance(next.saturating_duration_since(clock.now()));
        guard += 1;
        assert!(guard < 100, "never expired");
    }
    let snap = balanced(&s);
    assert_eq!((snap.dropped.expired, snap.delivered, snap.pending), (4, 0, 0));
    // It never attempted after its age ran out.
    assert!(sink.calls >= 2);
}

#[test]
fn too_large_splits_until_it_fits() {
    let clock = Arc::new(ManualClock::new());
    let s = shared(small());
    let mut sink = Script::new(&clock, []);
    sink.default = Act::MaxEvents(3);
    emit(&s, 0..10);
    s.step(&mut sink, &clock, &|| false, T).unwrap();
    assert_eq!(ids(&sink.delivered), (0..10).collect::<Vec<_>>());
    assert!(sink.delivered.iter().all(|b| b.len() <= 3));
    let keys: BTreeSet<_> = sink.delivered.iter().map(|b| b.idempotency_key().to_owned()).collect();
    assert_eq!(keys.len(), sink.delivered.len(), "halves get keys of their own");
    let snap = balanced(&s);
    assert_eq!(snap.delivered, 10);
    assert!(snap.splits >= 3);
    assert_eq!(snap.retries, 0, "a split is not a retry");
}

#[test]
fn a_single_event_too_large_for_the_receiver_is_dropped() {
    let clock = Arc::new(ManualClock::new());
    let s = shared(small());
    let mut sink = Script::new(&clock, []);
    sink.default = Act::TooLarge;
    emit(&s, 0..4);
    clock.advance(Duration::from_secs(1));
    s.step(&mut sink, &clock, &|| false, T).unwrap();
    let snap = balanced(&s);
    assert_eq!((snap.dropped.too_large, snap.splits, snap.delivered), (4, 3, 0));
}

#[test]
fn rejected_batches_are_dropped_and_the_next_one_goes() {
    let clock = Arc::new(ManualClock::new());
    let s = shared(small());
    let mut sink = Script::new(&clock, [Act::Reject]);
    emit(&s, 0..15);
    s.step(&mut sink, &clock, &|| false, T).unwrap();
    clock.advance(Duration::from_secs(1));
    s.step(&mut sink, &clock, &|| false, T).unwrap();
    assert_eq!(ids(&sink.delivered), (10..15).collect::<Vec<_>>());
    let snap = balanced(&s);
    assert_eq!((snap.dropped.rejected, snap.delivered), (10, 5));
    assert_eq!(snap.last_error.unwrap().kind, "rejected");
}

#[test]
fn a_partial_rejection_counts_both_parts_exactly() {
    let clock = Arc::new(ManualClock::new());
    let s = shared(small());
    // 3 of the first batch refused; the second receiver claims more
    // refusals than the batch holds, which counts as all of them.
    let mut sink = Script::new(&clock, [Act::PartlyReject(3), Act::PartlyReject(99)]);
    emit(&s, 0..15);
    s.step(&mut sink, &clock, &|| false, T).unwrap();
    clock.advance(Duration::from_secs(1));
    s.step(&mut sink, &clock, &|| false, T).unwrap();
    assert_eq!(sink.calls, 2, "neither batch is retried");
    let snap = balanced(&s);
    assert_eq!((snap.delivered, snap.dropped.rejected, snap.in_flight), (7, 8, 0));
    assert_eq!(snap.batches, 2);
    assert_eq!(snap.last_error.unwrap().kind, "rejected");
}

#[test]
fn fatal_keeps_the_batch_for_the_next_incarnation() {
    let clock = Arc::new(ManualClock::new());
    let s = shared(small());
    emit(&s, 0..5);
    clock.advance(Duration::from_secs(1));
    let mut first = Script::new(&clock, [Act::Fatal]);
    assert!(s.step(&mut first, &clock, &|| false, T).is_err());
    let key = s.state.lock().batches.front().unwrap().batch.idempotency_key().to_owned();
    assert_eq!(balanced(&s).in_flight, 5);
    // A fresh sink, as the restarted actor builds it.
    s.recover(&clock, true);
    let mut second = Script::new(&clock, []);
    let next = s.step(&mut second, &clock, &|| false, T).unwrap();
    assert_eq!(second.calls, 0, "the retry waits out the backoff");
    clock.advance(next - clock.now());
    s.step(&mut second, &clock, &|| false, T).unwrap();
    assert_eq!(second.delivered[0].idempotency_key(), key);
    assert_eq!(ids(&second.delivered), (0..5).collect::<Vec<_>>());
    let snap = balanced(&s);
    assert_eq!((snap.restarts, snap.retries, snap.delivered), (1, 1, 5));
}

#[test]
fn a_panicking_sink_loses_nothing() {
    quiet_panics();
    let clock = Arc::new(ManualClock::new());
    let s = shared(small());
    emit(&s, 0..12);
    let mut sink = Script::new(&clock, [Act::Panic]);
    let died = catch_unwind(AssertUnwindSafe(|| s.step(&mut sink, &clock, &|| false, T)));
    assert!(died.is_err());
    let snap = balanced(&s);
    assert_eq!((snap.in_flight, snap.queued), (10, 2));
    s.recover(&clock, true);
    let mut sink = Script::new(&clock, []);
    for _ in 0..5 {
        clock.advance(Duration::from_secs(1));
        s.step(&mut sink, &clock, &|| false, T).unwrap();
    }
    assert_eq!(ids(&sink.delivered), (0..12).collect::<Vec<_>>());
    let snap = balanced(&s);
    assert_eq!((snap.delivered, snap.restarts), (12, 1));
    assert_eq!(snap.last_error.unwrap().kind, "panic");
}

#[derive(Debug)]
struct Bomb(u64);

impl Serialize for Bomb {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 3 {
            panic!("serializer bomb");
        }
        s.serialize_u64(self.0)
    }
}

#[test]
fn a_panicking_serializer_drops_only_its_event() {
    quiet_panics();
    let clock = Arc::new(ManualClock::new());
    let s: Shared<Bomb> = Shared::new(small());
    for i in 0..6 {
        s.buffer.push(Bomb(i), &s.ledger).unwrap();
    }
    clock.advance(Duration::from_secs(1));
    let mut sink = Script::new(&clock, []);
    assert!(catch_unwind(AssertUnwindSafe(|| s.step(&mut sink, &clock, &|| false, T))).is_err());
    let snap = s.snapshot();
    assert!(snap.is_balanced(), "{snap:?}");
    assert_eq!(snap.in_flight, 4, "three staged plus the one being encoded");
    s.recover(&clock, true);
    s.step(&mut sink, &clock, &|| false, T).unwrap();
    let events: Vec<u64> = sink.delivered[0]
        .body()
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice::<Value>(l).unwrap()["event"].as_u64().unwrap())
        .collect();
    assert_eq!(events, vec![0, 1, 2, 4, 5]);
    let snap = s.snapshot();
    assert!(snap.is_balanced(), "{snap:?}");
    assert_eq!((snap.delivered, snap.dropped.encode), (5, 1));
}

#[test]
fn flush_delivers_everything_and_skips_own_backoff() {
    let clock = Arc::new(ManualClock::new());
    let s = shared(small());
    let mut sink = Script::new(&clock, [Act::Retry(None)]);
    emit(&s, 0..25);
    s.step(&mut sink, &clock, &|| false, T).unwrap();
    assert_eq!(sink.calls, 1);
    let deadline = clock.now() + Duration::from_secs(5);
    let (report, end) = s.flush(&mut sink, &clock, deadline, &|| false, T);
    assert!(matches!(end, DrainEnd::Complete), "{end:?}");
    assert_eq!(report.delivered, 25);
    assert_eq!(report.pending, 0);
    assert_eq!(ids(&sink.delivered), (0..25).collect::<Vec<_>>());
    assert!(sink.budgets[1..].iter().all(|b| b.unwrap() <= Duration::from_secs(5)));
    balanced(&s);
}

#[test]
fn flush_honours_retry_after_and_reports_pending_at_the_deadline() {
    let clock = Arc::new(ManualClock::new());
    let s = shared(small());
    let mut sink = Script::new(&clock, [Act::Retry(Some(Duration::from_secs(30)))]);
    emit(&s, 0..15);
    s.step(&mut sink, &clock, &|| false, T).unwrap();
    let (report, end) = s.flush(&mut sink, &clock, clock.now() + Duration::from_secs(5), &|| false, T);
    assert!(matches!(end, DrainEnd::Deadline), "{end:?}");
    assert_eq!(sink.calls, 1, "no retry before retry-after");
    assert_eq!((report.delivered, report.pending), (0, 15));
    assert!(report.ledger.is_balanced());
}

#[test]
fn flush_gives_the_sink_the_remaining_budget() {
    let clock = Arc::new(ManualClock::new());
    let s = shared(small().max_batch_events(5));
    let mut sink = Script::new(&clock, [Act::Slow(Duration::from_secs(3)), Act::Slow(Duration::from_secs(3))]);
    emit(&s, 0..15);
    let (report, end) = s.flush(&mut sink, &clock, clock.now() + Duration::from_secs(4), &|| false, T);
    assert!(matches!(end, DrainEnd::Deadline));
    assert_eq!(sink.budgets, vec![Some(Duration::from_secs(4)), Some(Duration::from_secs(1))]);
    assert_eq!((report.delivered, report.pending), (10, 5));
    balanced(&s);
}

#[test]
fn shutdown_drops_what_the_budget_cannot_deliver() {
    let clock = Arc::new(ManualClock::new());
    let s = shared(small());
    let mut sink = Script::new(&clock, []);
    sink.default = Act::Retry(Some(Duration::from_secs(30)));
    emit(&s, 0..25);
    s.buffer.close();
    let report = s.final_flush(Some(&mut sink), &clock, Duration::from_secs(5), T).unwrap();
    assert_eq!(report.dropped.shutdown, 25);
    assert_eq!(report.pending, 0);
    assert_eq!(s.buffer.push(json!(1), &s.ledger), Err(crate::Dropped::Closed(json!(1))));
    let snap = balanced(&s);
    assert_eq!(snap.dropped.shutdown, 26);
    assert_eq!(s.final_report().unwrap().dropped.shutdown, 25);
}

#[test]
fn a_final_flush_without_close_leaves_the_rest_pending() {
    let clock = Arc::new(ManualClock::new());
    let s = shared(small());
    let mut sink = Script::new(&clock, []);
    sink.default = Act::Retry(Some(Duration::from_secs(30)));
    emit(&s, 0..25);
    let report = s.final_flush(Some(&mut sink), &clock, Duration::from_secs(5), T).unwrap();
    assert_eq!((report.pending, report.delivered, report.dropped.total()), (25, 0, 0));
    assert_eq!(s.final_report().unwrap().pending, 25);
    // A later incarnation still delivers them.
    sink.default = Act::Deliver;
    clock.advance(Duration::from_secs(30));
    s.step(&mut sink, &clock, &|| false, T).unwrap();
    clock.advance(Duration::from_secs(1));
    s.step(&mut sink, &clock, &|| false, T).unwrap();
    assert_eq!(ids(&sink.delivered), (0..25).collect::<Vec<_>>());
    balanced(&s);
}

#[test]
fn step_returns_at_once_when_asked_to_stop() {
    let clock = Arc::new(ManualClock::new());
    let s = shared(small());
    let mut sink = Script::new(&clock, []);
    emit(&s, 0..30);
    assert_eq!(s.step(&mut sink, &clock, &|| true, T).unwrap(), clock.now());
    assert_eq!(sink.calls, 0);
    // Asked between batches: the one in flight finishes, no more start.
    let calls = std::cell::Cell::new(0);
    let stop = || {
        calls.set(calls.get() + 1);
        calls.get() > 2
    };
    s.step(&mut sink, &clock, &stop, T).unwrap();
    assert_eq!(sink.calls, 1);
    balanced(&s);
}

#[test]
fn shutdown_delivers_everything_when_it_can() {
    let clock = Arc::new(ManualClock::new());
    let s = shared(small().encoding(Encoding::JsonArray));
    let mut sink = Script::new(&clock, []);
    emit(&s, 0..33);
    s.buffer.close();
    let report = s.final_flush(Some(&mut sink), &clock, Duration::from_secs(5), T).unwrap();
    assert_eq!((report.delivered, report.dropped.total(), report.pending), (33, 0, 0));
    let n: usize = sink.delivered.iter().map(|b| serde_json::from_slice::<Vec<Value>>(b.body()).unwrap().len()).sum();
    assert_eq!(n, 33);
    balanced(&s);
}

#[test]
fn drop_oldest_policy_with_a_stuck_sink_counts_exactly() {
    let clock = Arc::new(ManualClock::new());
    let s = shared(small().capacity(20).overflow(OverflowPolicy::DropOldest));
    let mut sink = Script::new(&clock, []);
    sink.default = Act::Retry(None);
    emit(&s, 0..10);
    s.step(&mut sink, &clock, &|| false, T).unwrap();
    emit(&s, 10..60);
    let snap = balanced(&s);
    assert_eq!((snap.queued, snap.in_flight, snap.dropped.oldest_evicted), (20, 10, 30));
    s.buffer.close();
    let report = s.final_flush(None, &clock, Duration::from_secs(1), T).unwrap();
    assert_eq!(report.dropped.shutdown, 30);
    balanced(&s);
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Emit(u8),
        Step,
        Advance(u16),
        Sink(u8),
        Panic,
        Flush,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (1u8..40).prop_map(Op::Emit),
            3 => Just(Op::Step),
            2 => (1u16..3000).prop_map(Op::Advance),
            3 => (0u8..8).prop_map(Op::Sink),
            1 => Just(Op::Panic),
            1 => Just(Op::Flush),
        ]
    }

    fn act(n: u8) -> Act {
        match n {
            0..=2 => Act::Deliver,
            3 => Act::Retry(None),
            4 => Act::Retry(Some(Duration::from_millis(500))),
            5 => Act::MaxEvents(3),
            6 => Act::Reject,
            _ => Act::Fatal,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn ledger_balances_at_every_quiescent_point(
            ops in proptest::collection::vec(op(), 1..60),
            drop_oldest in any::<bool>(),
            seed in any::<u64>(),
        ) {
            quiet_panics();
            let clock = Arc::new(ManualClock::new());
            let policy = if drop_oldest { OverflowPolicy::DropOldest } else { OverflowPolicy::DropNewest };
            let s = shared(small().capacity(50).overflow(policy).max_batch_age(Duration::from_secs(20)));
            s.state.lock().rng = seed | 1;
            let mut sink = Script::new(&clock, []);
            let mut next_id = 0u64;
            let mut refused = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Emit(n) => for _ in 0..n {
                        if s.buffer.push(json!({ "i": next_id }), &s.ledger).is_err() {
                            refused.insert(next_id);
                        }
                        next_id += 1;
                    },
                    Op::Step => {
                        if s.step(&mut sink, &clock, &|| false, T).is_err() {
                            s.recover(&clock, true);
                        }
                    }
                    Op::Advance(ms) => clock.advance(Duration::from_millis(u64::from(ms))),
                    Op::Sink(n) => sink.acts.push_back(act(n)),
                    Op::Panic => {
                        sink.acts.push_front(Act::Panic);
                        if catch_unwind(AssertUnwindSafe(|| s.step(&mut sink, &clock, &|| false, T))).is_err() {
                            s.recover(&clock, true);
                        } else {
                            // Nothing was due; the panic stays scripted for later.
                            if matches!(sink.acts.front(), Some(Act::Panic)) {
                                sink.acts.pop_front();
                            }
                        }
                    }
                    Op::Flush => {
                        let deadline = clock.now() + Duration::from_secs(2);
                        if let (_, DrainEnd::Fatal(_)) = s.flush(&mut sink, &clock, deadline, &|| false, T) {
                            s.recover(&clock, true);
                        }
                    }
                }
                let snap = s.snapshot();
                prop_assert!(snap.is_balanced(), "{:?}", snap);
                prop_assert_eq!(snap.accepted, next_id);
            }
            // Delivered events are exactly-once per id, never a refused one.
            let delivered = ids(&sink.delivered);
            let unique: BTreeSet<u64> = delivered.iter().copied().collect();
            prop_assert_eq!(unique.len(), delivered.len());
            prop_assert!(unique.is_disjoint(&refused));
            prop_assert_eq!(s.snapshot().delivered, delivered.len() as u64);
            // The final flush settles everything.
            sink.acts.clear();
            s.buffer.close();
            let report = s.final_flush(Some(&mut sink), &clock, Duration::from_secs(600), T).unwrap();
            let snap = s.snapshot();
            prop_assert!(snap.is_balanced(), "{:?}", snap);
            prop_assert_eq!(snap.pending, 0);
            prop_assert_eq!(report.pending, 0);
        }
    }
}
