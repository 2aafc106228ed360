//! A real `Sink` for scenario tests: it records what it receives and can be
//! told to fail, hang or panic. Polling helpers come from `vigil-testkit`.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::Serialize;
use serde_json::Value;
use vigil_core::{Backoff, Supervisor, System};
use vigil_events::{Batch, Config, Delivery, Emitter, Encoding, EventPipeline, EventsHandle, LedgerSnapshot, Sink};

pub(crate) use vigil_testkit::{DEADLINE, wait_until};

/// The test event.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Ev {
    pub(crate) id: u64,
}

/// What the sink does on one delivery.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    Deliver,
    Retry(Option<Duration>),
    /// `TooLarge` for batches of more than this many events, else delivered.
    TooLargeAbove(usize),
    Reject,
    Fatal,
    Panic,
    /// Blocks until the gate opens, ignoring its budget, then delivers.
    Hang,
    /// Blocks until the gate opens or its budget runs out; delivers if the
    /// gate opened, else reports a retryable timeout. A sink that honours its
    /// budget.
    Wait,
}

/// One call of `deliver`.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub(crate) key: String,
    pub(crate) seqs: Vec<u64>,
    pub(crate) ids: Vec<u64>,
    pub(crate) bytes: usize,
    pub(crate) at: Instant,
    pub(crate) budget: Option<Duration>,
    pub(crate) outcome: &'static str,
}

/// Shared between the test and every sink the factory builds.
#[derive(Debug, Default)]
pub(crate) struct Control {
    script: Mutex<VecDeque<Step>>,
    default: Mutex<Option<Step>>,
    attempts: Mutex<Vec<Attempt>>,
    builds: AtomicUsize,
    failing_builds: AtomicUsize,
    held_builds: AtomicUsize,
    gate: Mutex<bool>,
    gate_cv: Condvar,
    inside: AtomicUsize,
    entered: Mutex<Vec<Vec<u64>>>,
}

impl Control {
    pub(crate) fn new() -> Arc<Control> {
        Arc::new(Control::default())
    }

    /// Steps for the next deliveries, in order.
    pub(crate) fn script(&self, steps: impl IntoIterator<Item = Step>) {
        self.script.lock().extend(steps);
    }

    /// What the sink does once the script is used up (initially: deliver).
    pub(crate) fn set_default(&self, step: Step) {
        *self.default.lock() = Some(step);
    }

    /// The next `n` factory calls fail.
    pub(crate) fn fail_builds(&self, n: usize) {
        self.failing_builds.store(n, Ordering::SeqCst);
    }

    /// The next `n` factory calls block until the gate opens (at most
    /// [`DEADLINE`]): a slow sink factory.
    pub(crate) fn hold_builds(&self, n: usize) {
        self.held_builds.store(n, Ordering::SeqCst);
    }

    pub(crate) fn builds(&self) -> usize {
        self.builds.load(Ordering::SeqCst)
    }

    pub(crate) fn open_gate(&self) {
        *self.gate.lock() = true;
        self.gate_cv.notify_all();
    }

    /// Blocks until the gate opens or `deadline` passes; whether it opened.
    fn wait_for_gate(&self, deadline: Instant) -> bool {
        let mut open = self.gate.lock();
        while !*open && !self.gate_cv.wait_until(&mut open, deadline).timed_out() {}
        *open
    }

    /// How many deliveries are running right now.
    pub(crate) fn inside(&self) -> usize {
        self.inside.load(Ordering::SeqCst)
    }

    /// The seqs of every batch handed to the sink, recorded on entry.
    pub(crate) fn entered(&self) -> Vec<Vec<u64>> {
        self.entered.lock().clone()
    }

    pub(crate) fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock().clone()
    }

    /// Batches the sink answered `Delivered` to (a retried batch may appear
    /// once per successful attempt).
    pub(crate) fn delivered(&self) -> Vec<Attempt> {
        self.attempts().into_iter().filter(|a| a.outcome == "delivered").collect()
    }

    pub(crate) fn delivered_ids(&self) -> Vec<u64> {
        self.delivered().into_iter().flat_map(|a| a.ids).collect()
    }

    /// For every delivered event id, the sequence numbers it arrived with.
    pub(crate) fn seqs_by_id(&self) -> BTreeMap<u64, BTreeSet<u64>> {
        let mut map: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for a in self.delivered() {
            for (id, seq) in a.ids.iter().zip(&a.seqs) {
                map.entry(*id).or_default().insert(*seq);
            }
        }
        map
    }

    /// The sink factory for `EventPipeline::sink`.
    pub(crate) fn factory(self: &Arc<Self>) -> impl Fn() -> Result<TestSink, std::io::Error> + Send + Sync + 'static {
        let control = Arc::clone(self);
        move || {
            control.builds.fetch_add(1, Ordering::SeqCst);
            let held = control.held_builds.load(Ordering::SeqCst);
            if held > 0 {
                control.held_builds.store(held - 1, Ordering::SeqCst);
                control.wait_for_gate(Instant::now() + DEADLINE);
            }
            let failing = control.failing_builds.load(Ordering::SeqCst);
            if failing > 0 {
                control.failing_builds.store(failing - 1, Ordering::SeqCst);
                return Err(std::io::Error::other("test sink: cannot read its certificate"));
            }
            Ok(TestSink { control: Arc::clone(&control) })
        }
    }
}

/// The sink itself.
#[derive(Debug)]
pub(crate) struct TestSink {
    control: Arc<Control>,
}

/// Parses a batch body into (seq, id) pairs, checking the record layout.
pub(crate) fn parse(batch: &Batch) -> Vec<(u64, u64)> {
    let records: Vec<Value> = match batch.encoding() {
        Encoding::Ndjson => {
            assert!(batch.body().ends_with(b"\n"), "NDJSON ends with a newline");
            batch
                .body()
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).expect("each line is JSON"))
                .collect()
        }
        Encoding::JsonArray => serde_json::from_slice(batch.body()).expect("the body is a JSON array"),
        other => panic!("these tests read NDJSON and JSON arrays, not {other:?}"),
    };
    records
        .iter()
        .map(|r| {
            assert!(r["ts"].as_u64().is_some_and(|ts| ts > 1_600_000_000_000), "ts is unix ms: {r}");
            (r["seq"].as_u64().expect("seq"), r["event"]["id"].as_u64().expect("event.id"))
        })
        .collect()
}

impl Sink for TestSink {
    fn deliver(&mut self, batch: &Batch, budget: Option<Duration>) -> Delivery {
        let c = &self.control;
        let step = c.script.lock().pop_front().or_else(|| c.default.lock().clone()).unwrap_or(Step::Deliver);
        let pairs = parse(batch);
        assert_eq!(pairs.iter().map(|p| p.0).collect::<Vec<_>>(), batch.seqs(), "body and seqs agree");
        let mut attempt = Attempt {
            key: batch.idempotency_key().to_owned(),
            seqs: batch.seqs().to_vec(),
            ids: pairs.iter().map(|p| p.1).collect(),
            bytes: batch.body().len(),
            at: Instant::now(),
            budget,
            outcome: "delivered",
        };
        c.entered.lock().push(batch.seqs().to_vec());
        c.inside.fetch_add(1, Ordering::SeqCst);
        let err = |what: &str| -> vigil_events::BoxError { format!("test sink: {what}").into() };
        let delivery = match step {
            Step::Deliver => Delivery::Delivered,
            Step::Retry(retry_after) => Delivery::Retryable { error: err("503"), retry_after },
            Step::TooLargeAbove(n) if batch.len() > n => Delivery::TooLarge { error: err("413") },
            Step::TooLargeAbove(_) => Delivery::Delivered,
            Step::Reject => Delivery::Rejected { error: err("400") },
            Step::Fatal => Delivery::Fatal { error: err("certificate expired") },
            Step::Panic => {
                c.inside.fetch_sub(1, Ordering::SeqCst);
                attempt.outcome = "panic";
                c.attempts.lock().push(attempt);
                panic!("test sink panic");
            }
            Step::Hang => {
                let mut open = c.gate.lock();
                while !*open {
                    c.gate_cv.wait(&mut open);
                }
                Delivery::Delivered
            }
            Step::Wait => {
                if c.wait_for_gate(Instant::now() + budget.unwrap_or(DEADLINE)) {
                    Delivery::Delivered
                } else {
                    Delivery::Retryable { error: err("timed out"), retry_after: None }
                }
            }
        };
        attempt.outcome = delivery.kind();
        c.attempts.lock().push(attempt);
        c.inside.fetch_sub(1, Ordering::SeqCst);
        delivery
    }
}

/// A config with short timings for tests.
pub(crate) fn fast_config() -> Config {
    Config::default()
        .capacity(10_000)
        .max_batch_events(64)
        .max_delay(Duration::from_millis(20))
        .retry_backoff_min(Duration::from_millis(5))
        .retry_backoff_max(Duration::from_millis(100))
        .max_batch_age(Duration::from_secs(60))
        .shutdown_timeout(Duration::from_secs(5))
}

/// A pipeline with the test sink, started in its own system.
pub(crate) struct Running {
    pub(crate) emitter: Emitter<Ev>,
    pub(crate) handle: EventsHandle,
    pub(crate) system: Option<System>,
}

pub(crate) fn start(config: Config, control: &Arc<Control>) -> Running {
    vigil_testkit::init_logging();
    let (emitter, spec, handle) = EventPipeline::builder(config)
        .sink(control.factory())
        .restart_backoff(Backoff::exponential(Duration::from_millis(5), Duration::from_millis(50)))
        .build()
        .expect("valid pipeline");
    let system = Supervisor::builder().child(spec).start().expect("the tree starts");
    Running { emitter, handle, system: Some(system) }
}

impl Running {
    /// Emits ids `range` from one thread, asserting each is accepted.
    pub(crate) fn emit_all(&self, range: std::ops::Range<u64>) {
        for id in range {
            self.emitter.emit(Ev { id }).expect("accepted");
        }
    }

    /// Makes the batcher note an empty buffer, so that it times `max_delay`
    /// from now. Without it, events emitted before its first look count as
    /// overdue, and whether they go out on their own depends on scheduling.
    pub(crate) fn settle_timer(&self) {
        let report = self.handle.flush(DEADLINE).expect("an empty flush");
        assert_eq!(report.pending, 0);
    }

    /// Shuts the tree down and returns how long it took.
    pub(crate) fn shutdown(&mut self) -> Duration {
        let start = Instant::now();
        if let Some(system) = self.system.take() {
            system.shutdown().expect("clean shutdown");
        }
        start.elapsed()
    }
}

/// The invariant, at a quiescent point.
pub(crate) fn assert_balanced(ledger: &LedgerSnapshot) {
    assert!(
        ledger.is_balanced(),
        "accepted {} != delivered {} + dropped {} + pending {}: {ledger:?}",
        ledger.accepted,
        ledger.delivered,
        ledger.dropped.total(),
        ledger.pending
    );
}

/// Every id in `expected` arrived exactly once with one sequence number, and
/// distinct ids have distinct sequence numbers. Returns the seqs.
pub(crate) fn assert_each_delivered_once(control: &Control, expected: impl IntoIterator<Item = u64>) -> BTreeSet<u64> {
    let expected: BTreeSet<u64> = expected.into_iter().collect();
    let ids = control.delivered_ids();
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique, expected, "the set of delivered ids");
    assert_eq!(ids.len(), unique.len(), "no event delivered twice");
    let by_id = control.seqs_by_id();
    let mut seqs = BTreeSet::new();
    for (id, s) in &by_id {
        assert_eq!(s.len(), 1, "event {id} kept one seq: {s:?}");
        assert!(seqs.insert(*s.first().unwrap()), "seq of event {id} is unique");
    }
    seqs
}
