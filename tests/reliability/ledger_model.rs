//! A model-based test of the ledger on the real pipeline.
//!
//! `vigil-events` has a property test of its delivery engine on a manual
//! clock (`engine.rs`, `ledger_balances_at_every_quiescent_point`); this one
//! drives the whole thing as users run it: the batcher actor under its
//! supervisor, real threads, real restarts (a sink that panics, a fatal
//! delivery, a sink factory that fails), real timers. The sink hands every
//! batch to the test and blocks until the test answers, so the test knows
//! exactly when nothing moves, and checks the ledger then.
//!
//! Random interleavings of emit, deliver, retry, split, reject, fatal, panic
//! and factory failures are checked against a reference model that tracks
//! every event id:
//!
//! - every batch the sink sees is a prefix of the events not yet resolved, in
//!   emit order; a retried batch is the same batch under the same idempotency
//!   key; the halves of a split batch come next, in order, under new keys;
//! - at each delivery the ledger equals the model: accepted, delivered,
//!   dropped per reason, pending, restarts, attempts, retries, and the kind
//!   of the last error, so `accepted = delivered + dropped + pending`;
//! - at the end every event was delivered exactly once or dropped with the
//!   reason the model expects.
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use proptest::prelude::*;
use serde::Serialize;
use vigil::events::{Batch, BoxError, Config, Delivery, EventPipeline, LedgerSnapshot, OverflowPolicy, Sink};
use vigil::{Backoff, Supervisor};
use vigil_testkit::DEADLINE;

#[derive(Debug, Serialize)]
struct Ev {
    id: u64,
}

/// The test's answer to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Deliver,
    Retry,
    TooLarge,
    Reject,
    Fatal,
    Panic,
}

/// One call of the sink, waiting for its verdict.
struct Call {
    key: String,
    ids: Vec<u64>,
    answer: Sender<Verdict>,
}

/// Hands each batch to the test and does what it is told.
struct Scripted {
    calls: Sender<Call>,
}

fn ids(batch: &Batch) -> Vec<u64> {
    batch
        .body()
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let record: serde_json::Value = serde_json::from_slice(line).expect("a JSON record");
            record["event"]["id"].as_u64().expect("event.id")
        })
        .collect()
}

impl Sink for Scripted {
    fn deliver(&mut self, batch: &Batch, _: Option<Duration>) -> Delivery {
        let error = |what: &str| -> BoxError { format!("scripted: {what}").into() };
        let (answer, verdict) = crossbeam_channel::bounded(1);
        let call = Call { key: batch.idempotency_key().to_owned(), ids: ids(batch), answer };
        if self.calls.send(call).is_err() {
            return Delivery::Retryable { error: error("the test has ended"), retry_after: None };
        }
        match verdict.recv() {
            Ok(Verdict::Deliver) => Delivery::Delivered,
            Ok(Verdict::Retry) => Delivery::Retryable { error: error("503"), retry_after: None },
            Ok(Verdict::TooLarge) => Delivery::TooLarge { error: error("413") },
            Ok(Verdict::Reject) => Delivery::Rejected { error: error("400") },
            Ok(Verdict::Fatal) => Delivery::Fatal { error: error("certificate expired") },
            Ok(Verdict::Panic) => panic!("scripted: the sink panics"),
            Err(_) => Delivery::Retryable { error: error("the test has ended"), retry_after: None },
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Emit this many events.
    Emit(u8),
    /// Wait for the next delivery and answer it.
    Answer(Verdict),
    /// The sink factory fails this many more times at the next restart.
    FailBuilds(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..20).prop_map(Op::Emit),
        4 => Just(Op::Answer(Verdict::Deliver)),
        2 => Just(Op::Answer(Verdict::Retry)),
        1 => Just(Op::Answer(Verdict::TooLarge)),
        1 => Just(Op::Answer(Verdict::Reject)),
        1 => Just(Op::Answer(Verdict::Fatal)),
        1 => Just(Op::Answer(Verdict::Panic)),
        1 => (1u8..3).prop_map(Op::FailBuilds),
    ]
}

/// What the ledger must say, event by event.
#[derive(Debug, Default)]
struct Model {
    next_id: u64,
    accepted: u64,
    /// Accepted and not yet resolved, in emit order.
    outstanding: VecDeque<u64>,
    /// The ids of the batch the batcher has taken (and of its halves after a
    /// split), not yet resolved.
    taken: VecDeque<u64>,
    /// The batch that must come again, unchanged: (key, ids).
    retry: Option<(String, Vec<u64>)>,
    keys: BTreeSet<String>,
    delivered: BTreeSet<u64>,
    rejected: BTreeSet<u64>,
    too_large: BTreeSet<u64>,
    refused: BTreeSet<u64>,
    restarts: u64,
    attempts: u64,
    retries: u64,
    batches: u64,
    splits: u64,
    failing_builds: u64,
    last_error: Option<&'static str>,
}

impl Model {
    /// The ledger at a moment when nothing moves.
    fn check(&self, ledger: &LedgerSnapshot) -> Result<(), TestCaseError> {
        prop_assert!(ledger.is_balanced(), "{}", ledger);
        prop_assert_eq!(ledger.accepted, self.accepted);
        prop_assert_eq!(ledger.delivered, self.delivered.len() as u64);
        prop_assert_eq!(ledger.dropped.queue_full, self.refused.len() as u64);
        prop_assert_eq!(ledger.dropped.rejected, self.rejected.len() as u64);
        prop_assert_eq!(ledger.dropped.too_large, self.too_large.len() as u64);
        prop_assert_eq!(
            ledger.dropped.total(),
            (self.refused.len() + self.rejected.len() + self.too_large.len()) as u64
        );
        prop_assert_eq!(ledger.pending, self.outstanding.len() as u64);
        prop_assert_eq!(ledger.restarts, self.restarts);
        prop_assert_eq!(ledger.attempts, self.attempts);
        prop_assert_eq!(ledger.retries, self.retries);
        prop_assert_eq!(ledger.batches, self.batches);
        prop_assert_eq!(ledger.splits, self.splits);
        prop_assert_eq!(ledger.last_error.as_ref().map(|e| e.kind.as_str()), self.last_error);
        Ok(())
    }

    /// Checks a batch handed to the sink against what the batcher may send.
    fn attempt(&mut self, call: &Call) -> Result<(), TestCaseError> {
        self.attempts += 1;
        prop_assert!(!call.ids.is_empty());
        if let Some((key, ids)) = self.retry.take() {
            prop_assert_eq!(&call.key, &key, "a retry keeps its idempotency key");
            prop_assert_eq!(&call.ids, &ids, "a retry is the same batch");
            self.retries += 1;
            return Ok(());
        }
        prop_assert!(self.keys.insert(call.key.clone()), "a new batch has a new key: {}", call.key);
        if self.taken.is_empty() {
            // A new batch: the oldest outstanding events, in order.
            prop_assert!(call.ids.len() <= 8, "max_batch_events: {:?}", call.ids);
            let prefix: Vec<u64> = self.outstanding.iter().take(call.ids.len()).copied().collect();
            prop_assert_eq!(&call.ids, &prefix, "a batch takes the oldest events in order");
            self.taken = call.ids.iter().copied().collect();
        } else {
            // A half of a split batch, in order.
            let prefix: Vec<u64> = self.taken.iter().take(call.ids.len()).copied().collect();
            prop_assert_eq!(&call.ids, &prefix, "the halves of a split come in order");
        }
        Ok(())
    }

    /// The batch left the batcher's hands: delivered or dropped.
    fn resolve(&mut self, ids: &[u64], into: fn(&mut Model) -> &mut BTreeSet<u64>) {
        for &id in ids {
            assert_eq!(self.outstanding.pop_front(), Some(id));
            assert_eq!(self.taken.pop_front(), Some(id));
            assert!(into(self).insert(id), "event {id} resolved twice");
        }
    }

    /// A restart of the batcher: one, plus one per failing sink build.
    fn restart(&mut self, verdict: Verdict) {
        self.restarts += 1 + self.failing_builds;
        // Which failure the ledger shows last: the failed builds record
        // `sink_factory` (each after its incarnation started, since the sink
        // is built off the start); a panic mid-delivery records `panic`.
        self.last_error = Some(match (verdict, self.failing_builds) {
            (Verdict::Panic, 0) => "panic",
            (Verdict::Fatal, 0) => "fatal",
            _ => "sink_factory",
        });
        self.failing_builds = 0;
    }

    fn answer(&mut self, call: &Call, verdict: Verdict) {
        let ids = call.ids.as_slice();
        match verdict {
            Verdict::Deliver => {
                self.batches += 1;
                self.resolve(ids, |m| &mut m.delivered);
            }
            Verdict::Retry => {
                self.retry = Some((call.key.clone(), call.ids.clone()));
                self.last_error = Some("retryable");
            }
            Verdict::TooLarge => {
                self.last_error = Some("too_large");
                if ids.len() >= 2 {
                    self.splits += 1;
                } else {
                    self.resolve(ids, |m| &mut m.too_large);
                }
            }
            Verdict::Reject => {
                self.last_error = Some("rejected");
                self.resolve(ids, |m| &mut m.rejected);
            }
            Verdict::Fatal | Verdict::Panic => {
                self.retry = Some((call.key.clone(), call.ids.clone()));
                self.restart(verdict);
            }
        }
    }
}

/// Runs one interleaving against a fresh pipeline.
fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let (calls_tx, calls): (Sender<Call>, Receiver<Call>) = crossbeam_channel::unbounded();
    let failing = Arc::new(AtomicU64::new(0));
    let factory_failing = Arc::clone(&failing);
    let config = Config::default()
        .capacity(40)
        .overflow(OverflowPolicy::DropNewest)
        .max_batch_events(8)
        .max_delay(Duration::from_millis(5))
        .retry_backoff_min(Duration::from_millis(1))
        .retry_backoff_max(Duration::from_millis(10))
        .max_batch_age(Duration::from_secs(3600))
        .shutdown_timeout(Duration::from_secs(1));
    let (emitter, spec, handle) = EventPipeline::builder::<Ev>(config)
        .sink(move || {
            if factory_failing.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                return Err("scripted: the sink factory fails");
            }
            Ok(Scripted { calls: calls_tx.clone() })
        })
        .restart_backoff(Backoff::exponential(Duration::from_millis(1), Duration::from_millis(10)))
        .build()
        .expect("a valid pipeline");
    let system = Supervisor::builder().child(spec).start().expect("start the pipeline");
    let mut model = Model::default();

    let answer_next = |model: &mut Model, verdict: Verdict| -> Result<(), TestCaseError> {
        let Ok(call) = calls.recv_timeout(DEADLINE) else {
            return Err(TestCaseError::fail(format!(
                "no delivery within {DEADLINE:?} with {} events outstanding: {}",
                model.outstanding.len(),
                handle.ledger()
            )));
        };
        model.attempt(&call)?;
        // The batcher is blocked in the sink: nothing moves.
        model.check(&handle.ledger())?;
        if matches!(verdict, Verdict::Fatal | Verdict::Panic) {
            // The scripted build failures hit the restart this answer causes.
            failing.store(model.failing_builds, Ordering::SeqCst);
        }
        model.answer(&call, verdict);
        let _ = call.answer.send(verdict);
        Ok(())
    };

    for op in ops {
        match op {
            Op::Emit(n) => {
                for _ in 0..n {
                    let id = model.next_id;
                    model.next_id += 1;
                    model.accepted += 1;
                    match emitter.emit(Ev { id }) {
                        Ok(()) => model.outstanding.push_back(id),
                        Err(refused) => {
                            prop_assert!(refused.is_full(), "refused only when full");
                            model.refused.insert(id);
                        }
                    }
                }
            }
            Op::Answer(verdict) if !model.outstanding.is_empty() => answer_next(&mut model, verdict)?,
            Op::Answer(_) => {}
            Op::FailBuilds(n) => model.failing_builds += u64::from(n),
        }
    }
    // Deliver what is left, still checking every step.
    while !model.outstanding.is_empty() {
        answer_next(&mut model, Verdict::Deliver)?;
    }
    handle.close();
    let report = system.shutdown().expect("the pipeline shuts down");
    prop_assert!(report.is_clean());
    prop_assert!(calls.try_recv().is_err(), "no delivery after everything was resolved");
    let ledger = handle.ledger();
    model.check(&ledger)?;
    prop_assert_eq!(ledger.pending, 0);
    let resolved: BTreeSet<u64> =
        model.delivered.iter().chain(&model.rejected).chain(&model.too_large).chain(&model.refused).copied().collect();
    prop_assert_eq!(resolved.len() as u64, model.next_id, "every event ends up exactly once");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_matches_a_model_of_every_event(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}

#[test]
fn a_scripted_sequence_with_every_kind_of_step() {
    use Op::*;
    use Verdict::*;
    let ops = vec![
        Emit(12),
        Answer(Retry),
        Answer(Fatal),
        FailBuilds(2),
        Answer(Panic),
        Answer(TooLarge),
        Answer(Deliver),
        Emit(50),
        Answer(Reject),
        Answer(TooLarge),
        Answer(TooLarge),
        Answer(TooLarge),
        Answer(Deliver),
        FailBuilds(1),
        Answer(Panic),
        Answer(Deliver),
    ];
    run(ops).expect("the model holds");
}
