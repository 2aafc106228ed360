//! The scenario behind `delivery_faults.rs`: one realistic delivery path,
//! a way to break it, and the measurements of one fault-matrix row.
//!
//! ```text
//! request threads ──emit──▶ EventPipeline buffer
//!                                  │
//!     root (System) ─ events (supervisor) ─ batcher ──▶ Recorded(HttpsSink) ──TLS──▶ [Proxy] ──▶ Collector
//! ```
//!
//! - [`start_load`]: the rig's [`Requests`], plain threads standing in for a
//!   service's request threads. Each serves requests in a loop: a little
//!   work, one `emit`, and the request counts as failed if anything panics or
//!   it takes longer than [`REQUEST_DEADLINE`].
//! - The batcher is the real `vigil_events` batcher in a real `vigil_core`
//!   tree. Its child factory builds a real `HttpsSink` (ureq + rustls, ring)
//!   on every (re)start, wrapped in [`Recorded`], which only notes when each
//!   attempt started and ended and how the sink classified it.
//! - The collector is a real `vigil_collector::Collector` (rustls) on
//!   loopback; faults come from its runtime controls. [`Proxy`] is a plain TCP
//!   forwarder that can stop listening, for "connection refused" while the
//!   collector (and its CA) keep running.
//! - [`Rig::finish`] stops the load, flushes, shuts the tree down and checks
//!   the accounting: the ledger invariant, the collector's de-duplicated
//!   events against what was emitted, event by event, and the restart counts
//!   from three sources.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use parking_lot::Mutex;
use serde::Serialize;
use vigil::events::{Batch, Config, Delivery, Emitter, Encoding, EventPipeline, EventsHandle, LedgerSnapshot, Sink};
use vigil::https::{HttpsError, HttpsSink, HttpsSinkConfig, HttpsStats, HttpsStatsSnapshot};
use vigil::{Backoff, SupervisionEvent, Supervisor, System};
use vigil_collector::{Collector, CollectorBuilder, CollectorStats};

use super::{RequestSummary, Requests};

/// A request slower than this counts as failed. `emit` takes microseconds; a
/// request that waited on the sink would take at least [`TIMEOUT_GLOBAL`].
pub(crate) const REQUEST_DEADLINE: Duration = Duration::from_millis(250);
/// The sink's per-request timeout.
pub(crate) const TIMEOUT_GLOBAL: Duration = Duration::from_millis(500);
/// The batcher's first retry delay.
pub(crate) const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(20);
/// The batcher's longest retry delay: well under a second, so a retry one
/// second or more after a failure can only come from a `Retry-After`.
pub(crate) const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(200);
/// The batcher's restart backoff bounds.
pub(crate) const RESTART_BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_millis(200));
/// How often the running sink polls its trust and identity files.
pub(crate) const TRUST_POLL: Duration = Duration::from_millis(100);
/// The most events in one batch.
pub(crate) const MAX_BATCH_EVENTS: usize = 256;
/// The path of the batcher in the tree.
pub(crate) const BATCHER: &str = "root/events/batcher";
/// The pause between two requests of one request thread (request arrival,
/// not a wait for anything).
const PACE: Duration = Duration::from_millis(2);

pub(crate) use vigil_testkit::{DEADLINE, TempDir, TestCa, eventually, init_logging};

// ---------------------------------------------------------------------------
// Request threads

/// The event every request emits. `(thread, n)` names it, so the events the
/// collector received can be matched one by one against what was emitted.
#[derive(Debug, Serialize)]
pub(crate) struct RequestEvent {
    thread: usize,
    n: u64,
    route: &'static str,
    amount_cents: u64,
}

/// What the request threads did.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    /// Requests served, failed ones included.
    pub(crate) requests: u64,
    /// Requests that panicked or took longer than [`REQUEST_DEADLINE`].
    pub(crate) failed: u64,
    /// Events `emit` refused (buffer full or pipeline closed).
    pub(crate) refused_by_emit: u64,
    /// The slowest request.
    pub(crate) slowest: Duration,
    /// Events emitted by each thread: thread `t` emitted `n` in `0..emitted[t]`.
    pub(crate) emitted: Vec<u64>,
}

impl Tally {
    pub(crate) fn emitted_total(&self) -> u64 {
        self.emitted.iter().sum()
    }
}

impl From<RequestSummary> for Tally {
    fn from(s: RequestSummary) -> Tally {
        Tally {
            requests: s.requests,
            failed: s.failed,
            refused_by_emit: s.refused,
            slowest: s.max_latency,
            emitted: s.per_thread,
        }
    }
}

/// The rig's [`Requests`]: a little work, one `emit`, timed; a panic or a
/// request slower than [`REQUEST_DEADLINE`] is a failed request, an event
/// `emit` refused is counted and the request itself succeeds.
fn start_load(emitter: &Emitter<RequestEvent>, threads: usize) -> Requests {
    let emitter = emitter.clone();
    Requests::paced(threads, PACE, move |thread, n, stats| {
        let started = Instant::now();
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            // The "work": price the payment.
            let amount_cents = (0..200u64).fold(n.wrapping_mul(2_654_435_761), |h, i| h.rotate_left(5) ^ i) % 9_000;
            emitter.emit(RequestEvent { thread, n, route: "/charge", amount_cents: 1_000 + amount_cents })
        }));
        let took = started.elapsed();
        let slow = || Err(format!("a request took {took:?}, over {REQUEST_DEADLINE:?}"));
        match outcome {
            Ok(Ok(())) if took <= REQUEST_DEADLINE => Ok(()),
            Ok(Ok(())) => slow(),
            Ok(Err(_refused)) => {
                // The request itself succeeded; the ledger counts the event as dropped.
                stats.refused.fetch_add(1, Ordering::Relaxed);
                if took > REQUEST_DEADLINE { slow() } else { Ok(()) }
            }
            Err(_panic) => Err("a request panicked".to_owned()),
        }
    })
}

// ---------------------------------------------------------------------------
// The recording sink

/// One delivery attempt as the sink saw it.
#[derive(Clone)]
pub(crate) struct Attempt {
    pub(crate) start: Instant,
    pub(crate) end: Instant,
    /// `delivered`, `retryable`, `too_large`, `rejected` or `fatal`.
    pub(crate) kind: &'static str,
    /// The server's `Retry-After`, as the sink parsed it.
    pub(crate) retry_after: Option<Duration>,
    pub(crate) seqs: Vec<u64>,
    /// The batch body, kept for failed attempts of a single event.
    pub(crate) body: Option<Vec<u8>>,
    /// The error's message, for failed attempts.
    pub(crate) error: Option<String>,
    /// The typed error, for failed attempts.
    pub(crate) https_error: Option<HttpsError>,
}

impl fmt::Debug for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attempt")
            .field("took", &(self.end - self.start))
            .field("kind", &self.kind)
            .field("retry_after", &self.retry_after)
            .field("events", &self.seqs.len())
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl Attempt {
    pub(crate) fn error_contains(&self, needle: &str) -> bool {
        self.error.as_deref().is_some_and(|e| e.contains(needle))
    }
}

/// Every attempt of every sink the factory built, in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Attempts(Arc<Mutex<Vec<Attempt>>>);

impl Attempts {
    pub(crate) fn all(&self) -> Vec<Attempt> {
        self.0.lock().clone()
    }
}

/// Wraps the real sink and notes each attempt. It changes nothing.
struct Recorded {
    inner: HttpsSink,
    log: Attempts,
}

impl Sink for Recorded {
    fn deliver(&mut self, batch: &Batch, budget: Option<Duration>) -> Delivery {
        let start = Instant::now();
        let delivery = self.inner.deliver(batch, budget);
        let end = Instant::now();
        let retry_after = match &delivery {
            Delivery::Retryable { retry_after, .. } => *retry_after,
            _ => None,
        };
        let https_error = delivery.error().and_then(|e| e.downcast_ref::<HttpsError>()).cloned();
        let failed = delivery.error().is_some();
        self.log.0.lock().push(Attempt {
            start,
            end,
            kind: delivery.kind(),
            retry_after,
            seqs: batch.seqs().to_vec(),
            body: (failed && batch.len() == 1).then(|| batch.body().to_vec()),
            error: delivery.error().map(ToString::to_string),
            https_error,
        });
        delivery
    }
}

// ---------------------------------------------------------------------------
// A TCP proxy that can refuse connections

/// Forwards TCP connections to a target. [`refuse`](Proxy::refuse) closes
/// the listening socket and every forwarded connection, so clients get
/// "connection refused" as from a stopped server; [`resume`](Proxy::resume)
/// listens on the same port again. TLS runs end to end through it.
pub(crate) struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    open: Arc<Mutex<Vec<TcpStream>>>,
    acceptor: Mutex<Option<(Arc<AtomicBool>, JoinHandle<()>)>>,
}

impl Proxy {
    pub(crate) fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let proxy = Proxy { addr, target, open: Arc::default(), acceptor: Mutex::new(None) };
        proxy.spawn_acceptor(listener);
        proxy
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("https://{}/ingest", self.addr)
    }

    fn spawn_acceptor(&self, listener: TcpListener) {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, open, target) = (Arc::clone(&stop), Arc::clone(&self.open), self.target);
        let handle = thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if flag.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(target) else { continue };
                    let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) =
                        (client.try_clone(), server.try_clone(), client.try_clone(), server.try_clone())
                    else {
                        continue;
                    };
                    open.lock().extend([c3, s3]);
                    pump(client, s2);
                    pump(server, c2);
                }
            })
            .expect("spawn the proxy");
        *self.acceptor.lock() = Some((stop, handle));
    }

    /// Stops listening and cuts every forwarded connection.
    pub(crate) fn refuse(&self) {
        if let Some((stop, handle)) = self.acceptor.lock().take() {
            stop.store(true, Ordering::Release);
            // Wake the acceptor; it sees the flag and drops the listener.
            let _ = TcpStream::connect(self.addr);
            handle.join().expect("the proxy's acceptor never panics");
        }
        for stream in self.open.lock().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Listens on the same port again.
    pub(crate) fn resume(&self) {
        let mut listener = None;
        assert!(
            eventually(|| {
                listener = TcpListener::bind(self.addr).ok();
                listener.is_some()
            }),
            "cannot listen on {} again",
            self.addr
        );
        self.spawn_acceptor(listener.expect("bound"));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.refuse();
    }
}

/// Copies `from` into `to` on a thread of its own until either side closes.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let spawned = thread::Builder::new().name("fault-proxy-pump".into()).spawn(move || {
        let _ = io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
    spawned.expect("spawn a proxy pump");
}

// ---------------------------------------------------------------------------
// The rig

/// How to set a rig up.
pub(crate) struct Options {
    /// The test's name, for the row and the temp dir.
    pub(crate) name: &'static str,
    /// The collector's settings (the rig adds the NDJSON log).
    pub(crate) collector: CollectorBuilder,
    /// Route the sink through a [`Proxy`].
    pub(crate) proxy: bool,
    /// A client identity `(chain, key)` for mutual TLS.
    pub(crate) identity: Option<(PathBuf, PathBuf)>,
    /// The directory for trust and identity files (made if not given).
    pub(crate) dir: Option<TempDir>,
    /// Request threads.
    pub(crate) threads: usize,
    /// How the batcher encodes: NDJSON to the collector's `/ingest`, or
    /// OTLP/HTTP JSON to its `/v1/logs`. Defaults to what
    /// [`with_encoding`] set for this thread (NDJSON otherwise).
    pub(crate) encoding: Encoding,
}

thread_local! {
    static ENCODING: std::cell::Cell<Encoding> = const { std::cell::Cell::new(Encoding::Ndjson) };
}

/// Runs `test` with every rig it starts (on this thread: each test has its
/// own) encoding its batches as `encoding`: how the fault matrix runs once
/// more in OTLP mode without a second copy of each test.
pub(crate) fn with_encoding(encoding: Encoding, test: fn()) {
    ENCODING.set(encoding);
    test();
}

impl Options {
    pub(crate) fn new(name: &'static str) -> Options {
        Options {
            name,
            collector: Collector::builder().idle_timeout(Some(Duration::from_secs(5))),
            proxy: false,
            identity: None,
            dir: None,
            threads: 3,
            encoding: ENCODING.get(),
        }
    }
}

/// A running scenario: collector, supervised pipeline, request threads.
pub(crate) struct Rig {
    pub(crate) name: &'static str,
    pub(crate) dir: TempDir,
    pub(crate) collector: Collector,
    pub(crate) proxy: Option<Proxy>,
    /// The sink's trust file: a copy of the collector's first CA.
    pub(crate) trust: PathBuf,
    pub(crate) https: HttpsStats,
    pub(crate) events: EventsHandle,
    pub(crate) attempts: Attempts,
    system: Option<System>,
    supervision: Receiver<SupervisionEvent>,
    load: Option<Requests>,
    ndjson: PathBuf,
}

/// When a fault was healed, and how many events had been emitted by then.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heal {
    pub(crate) at: Instant,
    pub(crate) accepted: u64,
}

impl Rig {
    pub(crate) fn start(options: Options) -> Rig {
        init_logging();
        let dir = options.dir.unwrap_or_else(|| TempDir::new(options.name));
        let ndjson = dir.path("received.ndjson");
        let collector = options.collector.ndjson_log(&ndjson).start().expect("the collector starts");
        let trust = dir.write("trust.pem", std::fs::read(collector.ca_pem_path()).expect("read the CA"));
        let proxy = options.proxy.then(|| Proxy::start(collector.addr()));
        let mut endpoint = proxy.as_ref().map_or_else(|| collector.endpoint(), Proxy::endpoint);
        if options.encoding.is_otlp() {
            endpoint = endpoint.replace("/ingest", "/v1/logs");
        }

        let mut https = HttpsSinkConfig::new(endpoint)
            .trust_file(&trust)
            .trust_poll_interval(TRUST_POLL)
            .timeout_connect(Some(TIMEOUT_GLOBAL))
            .timeout_global(Some(TIMEOUT_GLOBAL));
        if let Some((chain, key)) = &options.identity {
            https = https.client_identity(chain, key);
        }
        let stats = https.stats();
        let attempts = Attempts::default();
        let log = attempts.clone();
        let config = Config::default()
            .capacity(200_000)
            .max_batch_events(MAX_BATCH_EVENTS)
            .max_delay(Duration::from_millis(50))
            .retry_backoff_min(RETRY_BACKOFF_MIN)
            .retry_backoff_max(RETRY_BACKOFF_MAX)
            .max_batch_age(Duration::from_secs(600))
            .delivery_timeout(Some(Duration::from_secs(2)))
            .shutdown_timeout(Duration::from_secs(2))
            .encoding(options.encoding);
        let (emitter, events_spec, events) = EventPipeline::builder::<RequestEvent>(config)
            .id("events")
            // Called on every (re)start: a restart re-reads trust and identity files.
            .sink(move || https.build().map(|inner| Recorded { inner, log: log.clone() }))
            .restart_backoff(Backoff::exponential(RESTART_BACKOFF.0, RESTART_BACKOFF.1))
            .build()
            .expect("the pipeline builds");
        let system = Supervisor::builder().child(events_spec).start().expect("the tree starts");
        let supervision = system.subscribe();
        let load = start_load(&emitter, options.threads);
        Rig {
            name: options.name,
            dir,
            collector,
            proxy,
            trust,
            https: stats,
            events,
            attempts,
            system: Some(system),
            supervision,
            load: Some(load),
            ndjson,
        }
    }

    /// Everything a failure message needs.
    pub(crate) fn describe(&self) -> String {
        let attempts = self.attempts.all();
        let last: Vec<String> = attempts
            .iter()
            .rev()
            .take(5)
            .map(|a| format!("{} ({} events): {}", a.kind, a.seqs.len(), a.error.as_deref().unwrap_or("-")))
            .collect();
        format!(
            "[{}] ledger: {}\n  last error: {:?}\n  https: {:?}\n  collector: {:?}\n  attempts: {} total; last: {last:#?}",
            self.name,
            self.events.ledger(),
            self.events.ledger().last_error,
            self.https.snapshot(),
            self.collector.stats(),
            attempts.len(),
        )
    }

    /// Waits until `pred` holds; panics naming `what` otherwise.
    pub(crate) fn wait(&self, what: &str, pred: impl FnMut() -> bool) {
        assert!(eventually(pred), "timed out waiting for {what}\n{}", self.describe());
    }

    /// Waits until events flow end to end.
    pub(crate) fn warm_up(&self) {
        self.wait("events to flow", || {
            self.collector.stats().unique_events >= 100
                && self.attempts.all().iter().filter(|a| a.kind == "delivered").count() >= 2
        });
    }

    /// Checks, just before a fault is injected, that no attempt has failed
    /// yet, so that every failed attempt counted later is the fault's.
    pub(crate) fn fault_begins(&self) {
        let failed = self.attempts.all().iter().filter(|a| a.kind != "delivered").count();
        assert_eq!(failed, 0, "a failure before the fault\n{}", self.describe());
    }

    /// Heals the fault with `fix` and notes the time and the events emitted so far.
    pub(crate) fn heal(&self, fix: impl FnOnce()) -> Heal {
        fix();
        Heal { at: Instant::now(), accepted: self.events.ledger().accepted }
    }

    /// Waits until every event accepted before `heal` is accounted for: the
    /// collector holds it and the ledger knows it was delivered, or the
    /// ledger dropped it. Returns the time since the heal.
    pub(crate) fn recovered(&self, heal: Heal) -> Duration {
        let mut took = Duration::ZERO;
        self.wait("the backlog to be delivered after the heal", || {
            let ledger = self.events.ledger();
            let dropped = ledger.dropped.total();
            let done = self.collector.stats().unique_events + dropped >= heal.accepted
                && ledger.delivered + dropped >= heal.accepted;
            took = heal.at.elapsed();
            done
        });
        took
    }

    /// Stops the request threads, flushes, shuts everything down and
    /// gathers what happened.
    pub(crate) fn finish(mut self) -> Outcome {
        let tally = Tally::from(self.load.take().expect("the load runs until finish").stop());
        let flushed = self.events.flush(DEADLINE);
        assert!(flushed.is_ok(), "the final flush failed: {flushed:?}\n{}", self.describe());
        let ledger = self.events.ledger();
        let system = self.system.take().expect("the tree runs until finish");
        let tree = system.stats();
        let batcher_restarts = tree.find(BATCHER).expect("the batcher is in the tree").restarts_total;
        let events_restarts = tree.find("root/events").expect("the events supervisor is in the tree").restarts_total;
        self.events.close();
        let report = system.shutdown().expect("the tree shuts down");
        assert!(report.is_clean(), "abandoned children: {report:?}");
        let after_shutdown = self.events.ledger();
        let https = self.https.snapshot();
        let collector = self.collector.stats();
        let seqs = self.collector.seqs();
        self.collector.shutdown();
        if let Some(proxy) = &self.proxy {
            proxy.refuse();
        }
        let mut restarting = 0;
        let mut others = Vec::new();
        for event in self.supervision.try_iter() {
            match event {
                SupervisionEvent::Restarting { path, .. } if path == BATCHER => restarting += 1,
                e @ (SupervisionEvent::Restarting { .. } | SupervisionEvent::GaveUp { .. }) => others.push(e),
                _ => {}
            }
        }
        Outcome {
            name: self.name,
            tally,
            ledger,
            after_shutdown,
            batcher_restarts,
            events_restarts,
            restarting_events: restarting,
            other_supervision: others,
            https,
            collector,
            seqs,
            received: read_received(&self.ndjson),
            attempts: self.attempts.all(),
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // A failed test: stop the threads so the next tests run undisturbed.
        if let Some(load) = self.load.take() {
            let _ = load.stop();
        }
        if let Some(system) = self.system.take() {
            self.events.close();
            let _ = system.shutdown();
        }
    }
}

/// The `(thread, n)` of every event the collector logged (one line per
/// distinct `seq`), by thread.
fn read_received(path: &Path) -> BTreeMap<usize, Vec<u64>> {
    let text = std::fs::read_to_string(path).expect("read the collector's NDJSON log");
    let mut received: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (thread, n) = event_id(line.as_bytes());
        received.entry(thread).or_default().push(n);
    }
    received
}

/// The `(thread, n)` of one encoded record (as the collector logs it, or a
/// batch body of one event: NDJSON, or an OTLP request whose one log
/// record's body is the event).
pub(crate) fn event_id(record: &[u8]) -> (usize, u64) {
    let value: serde_json::Value = serde_json::from_slice(record).expect("a JSON record");
    if let Some(resource_logs) = value.get("resourceLogs") {
        let body = &resource_logs[0]["scopeLogs"][0]["logRecords"][0]["body"]["kvlistValue"]["values"];
        let field = |name: &str| -> u64 {
            let values = body.as_array().unwrap_or_else(|| panic!("no kvlist body in {value}"));
            let kv = values.iter().find(|kv| kv["key"] == name).unwrap_or_else(|| panic!("no {name} in {value}"));
            kv["value"]["intValue"].as_str().and_then(|s| s.parse().ok()).expect("an intValue")
        };
        return (usize::try_from(field("thread")).expect("a thread index"), field("n"));
    }
    let event = &value["event"];
    let thread = event["thread"].as_u64().unwrap_or_else(|| panic!("no thread in {value}"));
    let n = event["n"].as_u64().unwrap_or_else(|| panic!("no n in {value}"));
    (usize::try_from(thread).expect("a thread index"), n)
}

/// What a scenario did, gathered by [`Rig::finish`].
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) name: &'static str,
    pub(crate) tally: Tally,
    /// The ledger after the final flush.
    pub(crate) ledger: LedgerSnapshot,
    /// The ledger after the tree shut down.
    pub(crate) after_shutdown: LedgerSnapshot,
    /// The batcher's restarts, from the tree's stats.
    pub(crate) batcher_restarts: u64,
    /// Restarts of the events supervisor itself (must be 0: nothing escalates).
    pub(crate) events_restarts: u64,
    /// `Restarting` events for the batcher seen by the subscription.
    pub(crate) restarting_events: u64,
    /// Any other restart or give-up in the tree.
    pub(crate) other_supervision: Vec<SupervisionEvent>,
    pub(crate) https: HttpsStatsSnapshot,
    pub(crate) collector: CollectorStats,
    pub(crate) seqs: BTreeSet<u64>,
    /// The events the collector received, by request thread.
    pub(crate) received: BTreeMap<usize, Vec<u64>>,
    pub(crate) attempts: Vec<Attempt>,
}

/// The events a scenario may lose: which ones, and why.
#[derive(Debug, Clone, Default)]
pub(crate) struct Expected {
    /// `(thread, n)` of each event expected to be dropped as `too_large`.
    pub(crate) too_large: BTreeSet<(usize, u64)>,
    /// The batcher may fail before [`Rig::start`] subscribes to the tree's
    /// events (a fault present from the start): the subscription may then
    /// miss the first `Restarting`.
    pub(crate) fails_from_start: bool,
}

impl Outcome {
    /// The checks every scenario shares. Returns the number of events lost.
    ///
    /// - no request failed, panicked or was refused by `emit`;
    /// - the ledger balances with nothing pending, before and after shutdown;
    /// - every emitted event is either in the collector (exactly once by
    ///   `seq`, and matched by `(thread, n)`) or dropped for the expected
    ///   reason, and the counts agree everywhere;
    /// - the three restart counts agree, and nothing but the batcher restarted.
    pub(crate) fn check(&self, expected: &Expected) -> u64 {
        let t = &self.tally;
        let ctx = || format!("[{}] {self:#?}", self.name);
        assert!(t.requests > 0, "no requests ran");
        assert_eq!(t.failed, 0, "failed requests (slowest {:?}) {}", t.slowest, ctx());
        assert_eq!(t.refused_by_emit, 0, "emit refused events {}", ctx());
        let emitted = t.emitted_total();
        assert_eq!(emitted, t.requests, "one event per request");
        // Every request went to the route of the encoding in use.
        let c = &self.collector;
        if ENCODING.get().is_otlp() {
            assert_eq!((c.otlp_requests, c.otlp_records), (c.requests, c.events_received), "all OTLP {}", ctx());
            assert!(c.otlp_records > 0, "OTLP records arrived {}", ctx());
        } else {
            assert_eq!((c.otlp_requests, c.otlp_records), (0, 0), "no OTLP {}", ctx());
        }

        let l = &self.ledger;
        assert!(l.is_balanced(), "ledger invariant: {l}");
        assert_eq!(l.pending, 0, "nothing pending after the flush: {l}");
        assert_eq!(l.accepted, emitted, "the ledger accepted every emitted event: {l}");
        assert_eq!(l.accepted, l.delivered + l.dropped.total() + l.pending, "{l}");
        let a = &self.after_shutdown;
        assert!(a.is_balanced(), "ledger invariant after shutdown: {a}");
        assert_eq!((a.accepted, a.delivered, a.dropped), (l.accepted, l.delivered, l.dropped), "nothing moved: {a}");

        // Events lost: exactly the expected ones, for the expected reason.
        let lost = expected.too_large.len() as u64;
        assert_eq!(l.dropped.too_large, lost, "too_large drops: {l}");
        assert_eq!(l.dropped.total(), lost, "no other drops: {l}");
        // The collector's de-duplicated events plus the drops are what was emitted.
        assert_eq!(self.seqs.len() as u64, l.delivered, "the collector holds each delivered event once: {l}");
        assert_eq!(self.collector.unique_events, l.delivered);
        assert_eq!(self.seqs.len() as u64 + lost, emitted, "collector + dropped = emitted");
        // Event by event: per thread, received and dropped partition 0..emitted.
        assert_eq!(t.emitted.len(), self.tally.emitted.len());
        for (thread, &count) in t.emitted.iter().enumerate() {
            let got = self.received.get(&thread).cloned().unwrap_or_default();
            let unique: BTreeSet<u64> = got.iter().copied().collect();
            assert_eq!(unique.len(), got.len(), "thread {thread}: an event logged twice");
            let dropped: BTreeSet<u64> =
                expected.too_large.iter().filter(|(t, _)| *t == thread).map(|(_, n)| *n).collect();
            assert!(unique.is_disjoint(&dropped), "thread {thread}: a dropped event arrived");
            let all: BTreeSet<u64> = unique.union(&dropped).copied().collect();
            assert_eq!(all, (0..count).collect(), "thread {thread}: received + dropped != emitted");
        }

        // Attempts: the batcher's counts, the sink's and the recorder's agree.
        let delivered = self.attempts.iter().filter(|a| a.kind == "delivered");
        assert_eq!(l.attempts, self.attempts.len() as u64, "one ledger attempt per sink call");
        assert_eq!(l.batches, delivered.clone().count() as u64, "batches delivered");
        assert_eq!(l.delivered, delivered.map(|a| a.seqs.len() as u64).sum::<u64>(), "events in delivered batches");
        assert_eq!(self.https.deliveries.delivered, l.batches, "the sink's count of deliveries");
        assert_eq!(self.https.events_delivered, l.delivered, "the sink's count of events");

        // Restarts: the tree's count, the ledger's and the subscription's agree.
        assert_eq!(self.batcher_restarts, l.restarts, "tree vs ledger restarts");
        if expected.fails_from_start {
            let seen = self.restarting_events;
            assert!(seen == l.restarts || seen + 1 == l.restarts, "subscription saw {seen} of {} restarts", l.restarts);
        } else {
            assert_eq!(self.restarting_events, l.restarts, "subscription vs ledger restarts");
        }
        assert_eq!(self.events_restarts, 0, "the events supervisor never restarts");
        assert!(self.other_supervision.is_empty(), "only the batcher restarts: {:?}", self.other_supervision);
        lost
    }

    /// Attempts that were not delivered, counted by kind, e.g. `fatal ×4`.
    pub(crate) fn failures(&self) -> String {
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for a in self.attempts.iter().filter(|a| a.kind != "delivered") {
            *kinds.entry(a.kind).or_default() += 1;
        }
        kinds.iter().map(|(k, n)| format!("{k} ×{n}")).collect::<Vec<_>>().join(", ")
    }
}

// ---------------------------------------------------------------------------
// The matrix row

/// One row of the fault matrix in `docs/reliability.md`.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) fault: &'static str,
    /// What the sink and the batcher did.
    pub(crate) did: String,
    pub(crate) requests: u64,
    pub(crate) failed: u64,
    pub(crate) restarts: u64,
    pub(crate) lost: u64,
    pub(crate) lost_reason: &'static str,
    pub(crate) recover: Duration,
    pub(crate) test: &'static str,
}

impl Row {
    pub(crate) fn new(fault: &'static str, did: String, outcome: &Outcome, recover: Duration) -> Row {
        Row {
            fault,
            did,
            requests: outcome.tally.requests,
            failed: outcome.tally.failed,
            restarts: outcome.ledger.restarts,
            lost: outcome.ledger.dropped.total(),
            lost_reason: if outcome.ledger.dropped.too_large > 0 { "too_large" } else { "" },
            recover,
            test: outcome.name,
        }
    }

    /// Prints the row as a Markdown table line, prefixed with `ROW` for
    /// grep (`ROW-OTLP` in the OTLP run).
    pub(crate) fn print(&self) {
        let prefix = if ENCODING.get().is_otlp() { "ROW-OTLP" } else { "ROW" };
        println!("{prefix} {self}");
    }
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lost = if self.lost_reason.is_empty() {
            self.lost.to_string()
        } else {
            format!("{} (`{}`)", self.lost, self.lost_reason)
        };
        write!(
            f,
            "| {} | {} | {} of {} | {} | {} | {} ms | `{}` |",
            self.fault,
            self.did,
            self.failed,
            self.requests,
            self.restarts,
            lost,
            self.recover.as_millis(),
            self.test
        )
    }
}
