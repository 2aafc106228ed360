//! The chaos soak: the incident's payments service under a seeded random
//! schedule of faults, with resource bounds checked every second.
//!
//! ```text
//! SOAK_SECS=600 cargo test --release --test reliability -- --ignored --exact soak::soak --nocapture
//! SOAK_SEED=12345 ...     replays a schedule (the seed is printed at the start)
//! ```
//!
//! The service is `examples/incident/service.rs` itself: tiny_http request
//! handlers as Vigil actors and the event pipeline with an `HttpsSink`, all in
//! one supervision tree, shipping to a `vigil_collector::Collector` on
//! loopback. Client threads send `POST /charge` over keep-alive connections.
//! Two schedules run at once, both drawn from one xorshift generator:
//!
//! - network and certificate faults, one episode at a time: a CA rotation
//!   followed by the operator's trust fix, expired and wrong-name server
//!   certificates, and collector faults (never answer, slow, reset, cut
//!   response, garbage, 500, 503 and 429 with `Retry-After`, 413, 401). After
//!   each episode the schedule heals the fault and waits until everything
//!   emitted before the heal is delivered: that is the episode's recovery time.
//! - supervision chaos in a `chaos` subtree added to the running service:
//!   panics in `handle` (restarted in place), factory failures, a child with
//!   backoff, a restart storm that escalates one level, and a hung child
//!   replaced through the API (its thread abandoned, ending on its own later).
//!
//! Every second it checks: zero failed requests; the ledger invariant
//! (`accepted = delivered + dropped + pending`, read until a snapshot lands
//! between two moving events); RSS at most the warm-up peak + 64 MiB; OS
//! threads at most the warm-up peak + 24; open file descriptors at most the
//! warm-up peak + 32. At the end it flushes, shuts down, checks that the
//! collector's distinct sequence numbers plus the ledger's drops equal the
//! events emitted, and prints the figures.
//!
//! `soak_short` runs the same code for 15 seconds in every `cargo test`.
use crate::rig;
use crate::service;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use vigil::events::LedgerSnapshot;
use vigil::{
    Actor, Addr, Backoff, BoxError, ChildSpec, Context, SupervisionEvent, Supervisor, SupervisorRef, WorkerSpec,
};
use vigil_collector::{CertMode, Collector, Fault};
use vigil_testkit::TempDir;

use service::{ServiceConfig, VigilService};

/// Client threads; each sends a request every [`CLIENT_INTERVAL`].
const CLIENTS: usize = 4;
const CLIENT_INTERVAL: Duration = Duration::from_millis(40);
/// Resource bounds above the warm-up peaks.
const RSS_SLACK_KIB: u64 = 64 * 1024;
const THREAD_SLACK: u64 = 24;
const FD_SLACK: u64 = 32;
/// How long an episode's backlog may take to be delivered after the heal.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(90);

/// Only one soak at a time in a process: they measure the whole process.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
#[ignore = "the 10-minute chaos soak: SOAK_SECS=600 cargo test --release --test reliability -- --ignored --exact soak::soak --nocapture"]
fn soak() {
    alone("soak::soak", || {
        let secs =
            std::env::var("SOAK_SECS").ok().map_or(600, |s| s.parse().expect("SOAK_SECS is a number of seconds"));
        run(Duration::from_secs(secs));
    });
}

#[test]
fn soak_short() {
    alone("soak::soak_short", || run(Duration::from_secs(15)));
}

/// Set in the child process that runs one soak with nothing else beside it.
const ALONE: &str = "VIGIL_SOAK_ALONE";

/// Runs `soak` alone in a process: the soak bounds the whole process's
/// threads, file descriptors and RSS, which the other tests of this binary
/// would move. In the test harness's process it re-runs this binary with only
/// `test` (`--exact`) and [`ALONE`] set, passes the child's output on, and
/// fails if the child failed or did not run exactly that test; in the child it
/// runs `soak`.
fn alone(test: &str, soak: impl FnOnce()) {
    if std::env::var_os(ALONE).is_some() {
        return soak();
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .args([test, "--exact", "--include-ignored", "--nocapture", "--test-threads", "1"])
        .env(ALONE, "1")
        .output()
        .expect("run the soak in a child process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the soak's process failed: {}", out.status);
    assert!(stdout.contains("test result: ok. 1 passed"), "the child did not run {test} alone");
}

/// A small xorshift generator: the whole schedule follows from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `lo..hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64) as usize]
    }
}

fn seed() -> u64 {
    match std::env::var("SOAK_SEED") {
        Ok(s) => s.parse().expect("SOAK_SEED is a u64"),
        Err(_) => {
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
            (nanos ^ (u64::from(std::process::id()) << 32)) | 1
        }
    }
}

fn run(duration: Duration) {
    let _one = ONE_AT_A_TIME.lock();
    let started = now_utc();
    let seed = seed();
    let mut rng = Rng(seed);
    println!("soak: {duration:?}, seed {seed} (SOAK_SEED={seed} replays the schedule)");

    let workdir = TempDir::new("soak");
    let collector = Arc::new(Collector::builder().dir(workdir.path("collector")).start().expect("start the collector"));
    let trust = workdir.path("trust.pem");
    std::fs::copy(collector.ca_pem_path(), &trust).expect("install the trust file");
    let service = VigilService::start(ServiceConfig {
        handlers: 4,
        // The soak's own pace, as before issue 14: fatal faults healed on the
        // collector's side (not by a trust file) wait out this backoff.
        trust_poll: Duration::from_millis(500),
        restart_backoff: vigil::Backoff::exponential(Duration::from_millis(200), Duration::from_secs(2)),
        ..ServiceConfig::replay(collector.endpoint(), vec![trust.clone()], Duration::from_millis(1))
    })
    .expect("start the service");
    let supervision = service.system.subscribe();
    let chaos = Chaos::start(service.system.root(), Rng(rng.next() | 1));
    let clients = Clients::start(service.port);
    // Episodes hold a fault for up to a tenth of the run (0.5 to 4 s).
    let max_hold = (duration / 10).clamp(Duration::from_secs(1), Duration::from_secs(4));
    let faults =
        Faults::start(Arc::clone(&collector), trust.clone(), service.events.clone(), max_hold, Rng(rng.next() | 1));

    let began = Instant::now();
    let warmup = (duration / 5).min(Duration::from_secs(60));
    let mut figures = Figures::default();
    let mut restarts = Restarts::default();
    let mut next = began + Duration::from_secs(1);
    while began.elapsed() < duration {
        // Pacing the sampler: one sample a second.
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += Duration::from_secs(1);
        restarts.count(supervision.try_iter());
        let failed = clients.stats.failed.load(Ordering::Relaxed);
        assert_eq!(failed, 0, "a request failed at {:?}: {:?}", began.elapsed(), clients.stats.first_error.lock());
        figures.sample_ledger(&service.events);
        let sample = Resources::now();
        if began.elapsed() <= warmup {
            figures.warmup = figures.warmup.max(&sample);
        } else {
            let bound = figures.warmup.bound();
            assert!(sample.rss_kib <= bound.rss_kib, "RSS {} KiB over the bound {} KiB", sample.rss_kib, bound.rss_kib);
            assert!(sample.threads <= bound.threads, "{} threads, bound {}", sample.threads, bound.threads);
            assert!(sample.fds <= bound.fds, "{} open fds, bound {}", sample.fds, bound.fds);
        }
        figures.record(&sample);
    }

    // The end: stop injecting, stop the load, deliver, shut down in order.
    let injected = faults.stop();
    let chaos = chaos.stop();
    let requests = clients.stop();
    restarts.count(supervision.try_iter());
    assert_eq!(requests.failed, 0, "{:?}", requests.first_error);
    let flushed = service.events.flush(Duration::from_secs(60));
    assert!(flushed.is_ok(), "the final flush: {flushed:?}");
    service.events.close();
    let report = service.system.shutdown().expect("the tree shuts down in order");
    assert!(report.abandoned.iter().all(|p| p == "root/chaos/sleeper"), "{report:?}");
    let ledger = service.events.ledger();
    let unique = collector.seqs().len() as u64;
    assert!(ledger.is_balanced(), "{ledger}");
    assert_eq!(ledger.pending, 0, "{ledger}");
    assert_eq!(unique, ledger.delivered, "the collector holds exactly the delivered events: {ledger}");
    assert_eq!(unique + ledger.dropped.total(), ledger.accepted, "{ledger}");
    assert_eq!(ledger.accepted, requests.ok, "one event per request: {ledger}");
    let https = service.https.snapshot();
    collector.shutdown();

    let out = Outcome {
        started,
        seed,
        duration: began.elapsed(),
        requests,
        restarts,
        chaos,
        injected,
        figures,
        ledger,
        unique,
        tls_failures: https.tls_failures,
        certificate_changes: https.certificate_changes,
    };
    out.print();
}

/// One reading of the process's resources.
#[derive(Debug, Clone, Copy, Default)]
struct Resources {
    rss_kib: u64,
    threads: u64,
    fds: u64,
}

impl Resources {
    fn now() -> Resources {
        Resources { rss_kib: rig::rss_kib(), threads: rig::threads(), fds: rig::fds() }
    }

    fn max(&self, other: &Resources) -> Resources {
        Resources {
            rss_kib: self.rss_kib.max(other.rss_kib),
            threads: self.threads.max(other.threads),
            fds: self.fds.max(other.fds),
        }
    }

    fn min(&self, other: &Resources) -> Resources {
        Resources {
            rss_kib: self.rss_kib.min(other.rss_kib),
            threads: self.threads.min(other.threads),
            fds: self.fds.min(other.fds),
        }
    }

    /// The bounds after warm-up.
    fn bound(&self) -> Resources {
        Resources {
            rss_kib: self.rss_kib + RSS_SLACK_KIB,
            threads: self.threads + THREAD_SLACK,
            fds: self.fds + FD_SLACK,
        }
    }
}

#[derive(Default)]
struct Figures {
    warmup: Resources,
    min: Option<Resources>,
    max: Resources,
    samples: u64,
    /// Samples whose first ledger snapshot was already balanced.
    balanced_first: u64,
    /// The largest imbalance a first snapshot showed (events in motion).
    worst_motion: u64,
}

impl Figures {
    fn record(&mut self, sample: &Resources) {
        self.min = Some(self.min.map_or(*sample, |m| m.min(sample)));
        self.max = self.max.max(sample);
    }

    /// The invariant holds whenever no event is moving; a snapshot taken
    /// while one moves can be off by the events in motion. Read until a
    /// snapshot balances, within a deadline.
    fn sample_ledger(&mut self, events: &vigil::events::EventsHandle) {
        self.samples += 1;
        let first = events.ledger();
        let off = |l: &LedgerSnapshot| l.accepted.abs_diff(l.delivered + l.dropped.total() + l.pending);
        if first.is_balanced() {
            self.balanced_first += 1;
            return;
        }
        self.worst_motion = self.worst_motion.max(off(&first));
        assert!(off(&first) <= 2 * 512 + CLIENTS as u64 * 8, "imbalance beyond the events in motion: {first}");
        let mut last = first;
        let balanced = rig::poll(Duration::from_secs(5), || {
            last = events.ledger();
            last.is_balanced()
        });
        assert!(balanced, "the ledger never balanced within 5 s: {last}");
    }
}

/// Restarts seen by the supervision subscription.
#[derive(Default, Debug)]
struct Restarts {
    chaos: u64,
    batcher: u64,
    other: u64,
    abandoned: u64,
}

impl Restarts {
    fn count(&mut self, events: impl Iterator<Item = SupervisionEvent>) {
        for event in events {
            match event {
                SupervisionEvent::Restarting { path, .. } if path.starts_with("root/chaos") => self.chaos += 1,
                SupervisionEvent::Restarting { path, .. } if path.starts_with("root/events") => self.batcher += 1,
                SupervisionEvent::Restarting { .. } => self.other += 1,
                SupervisionEvent::Abandoned { .. } => self.abandoned += 1,
                _ => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Clients.

#[derive(Default)]
struct ClientStats {
    ok: AtomicU64,
    failed: AtomicU64,
    max_latency_us: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
    first_error: Mutex<Option<String>>,
}

struct Clients {
    stats: Arc<ClientStats>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct RequestFigures {
    ok: u64,
    failed: u64,
    max_latency: Duration,
    p50: Duration,
    p99: Duration,
    first_error: Option<String>,
}

impl Clients {
    fn start(port: u16) -> Clients {
        let stats = Arc::new(ClientStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let url = format!("http://127.0.0.1:{port}/charge");
        // Open the keep-alive connections one at a time: tiny_http's pool can
        // park a connection that arrives in a burst behind busy ones.
        let agents: Vec<ureq::Agent> = (0..CLIENTS)
            .map(|_| {
                let agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(10)))
                    .build()
                    .new_agent();
                let health = format!("http://127.0.0.1:{port}/health");
                agent.get(&health).call().and_then(|mut r| r.body_mut().read_to_string()).expect("health check");
                agent
            })
            .collect();
        let threads = agents
            .into_iter()
            .enumerate()
            .map(|(n, agent)| {
                let (stats, stop, url) = (Arc::clone(&stats), Arc::clone(&stop), url.clone());
                std::thread::Builder::new()
                    .name(format!("client-{n}"))
                    .spawn(move || {
                        let mut next = Instant::now() + CLIENT_INTERVAL.mul_f64(n as f64 / CLIENTS as f64);
                        while !stop.load(Ordering::Relaxed) {
                            // Pacing to a fixed rate, not waiting for a condition.
                            std::thread::sleep(next.saturating_duration_since(Instant::now()));
                            next += CLIENT_INTERVAL;
                            let sent = Instant::now();
                            let outcome = agent
                                .post(&url)
                                .header("Content-Type", "application/json")
                                .send(r#"{"amount_cents":1250,"currency":"EUR"}"#)
                                .map_err(|e| e.to_string())
                                .and_then(|mut response| {
                                    let status = response.status().as_u16();
                                    let body = response.body_mut().read_to_string().map_err(|e| e.to_string())?;
                                    if status == 201 && !body.is_empty() {
                                        Ok(())
                                    } else {
                                        Err(format!("HTTP {status}"))
                                    }
                                });
                            let us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                            stats.max_latency_us.fetch_max(us, Ordering::Relaxed);
                            stats.latencies_us.lock().push(u32::try_from(us).unwrap_or(u32::MAX));
                            match outcome {
                                Ok(()) => stats.ok.fetch_add(1, Ordering::Relaxed),
                                Err(e) => {
                                    stats.first_error.lock().get_or_insert(e);
                                    stats.failed.fetch_add(1, Ordering::Relaxed)
                                }
                            };
                        }
                    })
                    .expect("spawn a client thread")
            })
            .collect();
        Clients { stats, stop, threads }
    }

    fn stop(self) -> RequestFigures {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("a client thread panicked");
        }
        let mut latencies = std::mem::take(&mut *self.stats.latencies_us.lock());
        latencies.sort_unstable();
        let quantile = |q: f64| {
            let rank = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len().max(1));
            Duration::from_micros(latencies.get(rank - 1).copied().unwrap_or(0).into())
        };
        RequestFigures {
            ok: self.stats.ok.load(Ordering::Relaxed),
            failed: self.stats.failed.load(Ordering::Relaxed),
            max_latency: Duration::from_micros(self.stats.max_latency_us.load(Ordering::Relaxed)),
            p50: quantile(0.50),
            p99: quantile(0.99),
            first_error: self.stats.first_error.lock().clone(),
        }
    }
}

// ---------------------------------------------------------------------------
// Network and certificate faults.

/// The faults of the schedule, by name.
const FAULTS: &[&str] = &[
    "ca-rotation",
    "expired-cert",
    "wrong-name-cert",
    "never-answer",
    "slow",
    "slow-past-timeout",
    "reset",
    "close-mid-response",
    "garbage",
    "500",
    "503-retry-after",
    "429-retry-after",
    "413",
    "401",
];

/// What the fault schedule did.
#[derive(Debug, Default)]
struct Injected {
    /// Episodes per fault.
    count: BTreeMap<&'static str, u32>,
    /// The slowest recovery per fault: from the heal until everything
    /// emitted before it was delivered or dropped.
    slowest: BTreeMap<&'static str, Duration>,
}

struct Faults {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Injected>,
}

impl Faults {
    fn start(
        collector: Arc<Collector>,
        trust: PathBuf,
        events: vigil::events::EventsHandle,
        max_hold: Duration,
        mut rng: Rng,
    ) -> Faults {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("faults".into())
            .spawn(move || {
                let mut injected = Injected::default();
                // A healthy start.
                pause(&stopping, rng.millis(1000, 2000));
                while !stopping.load(Ordering::Relaxed) {
                    let fault = *rng.pick(FAULTS);
                    let hold = rng.millis(500, max_hold.as_millis() as u64);
                    inject(&collector, &trust, fault, hold, &stopping, &mut rng);
                    // Recovery: everything emitted before the heal is resolved.
                    let healed = Instant::now();
                    let target = events.ledger().accepted;
                    let caught_up = rig::poll(RECOVERY_DEADLINE, || {
                        let l = events.ledger();
                        l.delivered + l.dropped.total() >= target
                    });
                    assert!(caught_up, "no recovery {RECOVERY_DEADLINE:?} after {fault}: {}", events.ledger());
                    *injected.count.entry(fault).or_default() += 1;
                    let slowest = injected.slowest.entry(fault).or_default();
                    *slowest = (*slowest).max(healed.elapsed());
                    pause(&stopping, rng.millis(200, 1500));
                }
                injected
            })
            .expect("spawn the fault schedule");
        Faults { stop, thread }
    }

    fn stop(self) -> Injected {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the fault schedule panicked")
    }
}

/// Sleeps for `d`, or less once the soak is ending. Paces the schedule.
fn pause(stop: &AtomicBool, d: Duration) {
    let end = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20).min(end.saturating_duration_since(Instant::now())));
    }
}

/// Applies one fault for `hold`, then heals it.
fn inject(collector: &Collector, trust: &Path, fault: &str, hold: Duration, stop: &AtomicBool, rng: &mut Rng) {
    let during = |f: Fault| {
        collector.set_fault(f);
        pause(stop, hold);
        collector.set_fault(Fault::Healthy);
    };
    match fault {
        "ca-rotation" => {
            let new_ca = collector.rotate_ca().expect("rotate the CA");
            pause(stop, hold);
            // The operator's fix: append the new CA to the client's trust file.
            let pem = std::fs::read(&new_ca).expect("read the new CA");
            let mut file = std::fs::OpenOptions::new().append(true).open(trust).expect("open the trust file");
            file.write_all(b"\n").and_then(|()| file.write_all(&pem)).and_then(|()| file.sync_all()).expect("append");
        }
        "expired-cert" | "wrong-name-cert" => {
            let mode = if fault == "expired-cert" { CertMode::Expired } else { CertMode::WrongName };
            collector.serve(mode).expect("serve a bad certificate");
            pause(stop, hold);
            collector.serve(CertMode::Valid).expect("serve a valid certificate");
        }
        "never-answer" => during(Fault::NeverAnswer),
        "slow" => during(Fault::Slow(rng.millis(50, 1500))),
        "slow-past-timeout" => during(Fault::Slow(Duration::from_secs(6))),
        "reset" => during(Fault::Reset),
        "close-mid-response" => during(Fault::CloseMidResponse),
        "garbage" => during(Fault::Garbage),
        "500" => during(Fault::Status(500)),
        "503-retry-after" => during(Fault::RetryAfter { status: 503, value: rng.range(1, 3).to_string() }),
        "429-retry-after" => during(Fault::RetryAfter { status: 429, value: rng.range(1, 3).to_string() }),
        // One refused request: the batch in flight is split in halves.
        "413" => collector.fail_next(1, Fault::Status(413)),
        "401" => during(Fault::Status(401)),
        other => unreachable!("unknown fault {other}"),
    }
}

// ---------------------------------------------------------------------------
// Supervision chaos.

enum Jolt {
    /// Panics in `handle`.
    Crash,
    /// Blocks in `handle` for this long, ignoring stop requests.
    Hang(Duration),
}

/// A worker that panics or hangs when told to. With a storm budget, each
/// start spends one and fails at once.
struct Crasher {
    storm: Arc<AtomicU64>,
}

impl Actor for Crasher {
    type Msg = Jolt;

    fn started(&mut self, ctx: &mut Context<'_, Jolt>) -> Result<(), BoxError> {
        if self.storm.load(Ordering::SeqCst) > 0 {
            self.storm.fetch_sub(1, Ordering::SeqCst);
            ctx.set_receive_timeout(Some(Duration::ZERO));
        }
        Ok(())
    }

    fn handle(&mut self, jolt: Jolt, _: &mut Context<'_, Jolt>) -> Result<(), BoxError> {
        match jolt {
            Jolt::Crash => panic!("chaos: crash"),
            Jolt::Hang(d) => {
                // The behaviour under test: a handler stuck in a blocking call.
                std::thread::sleep(d);
                Ok(())
            }
        }
    }

    fn timeout(&mut self, _: &mut Context<'_, Jolt>) -> Result<(), BoxError> {
        Err("chaos: fails at once after every start".into())
    }
}

fn crasher(id: &str, storm: &Arc<AtomicU64>) -> WorkerSpec<Crasher> {
    let storm = Arc::clone(storm);
    ChildSpec::worker(id, move || Crasher { storm: Arc::clone(&storm) })
}

/// What the chaos schedule did.
#[derive(Debug, Default)]
struct ChaosFigures {
    crashes: u64,
    storms: u64,
    hangs: u64,
}

struct Chaos {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<ChaosFigures>,
}

impl Chaos {
    /// Adds the `chaos` subtree to the running service and starts jolting it.
    fn start(root: &SupervisorRef, mut rng: Rng) -> Chaos {
        let quiet = Arc::new(AtomicU64::new(0));
        let storm_budget = Arc::new(AtomicU64::new(0));
        let builds_to_fail = Arc::new(AtomicU64::new(0));
        let mut crashers: Vec<Addr<Jolt>> = Vec::new();
        let mut chaos = Supervisor::builder().intensity(100_000, Duration::from_secs(1));
        for n in 0..4 {
            let spec = crasher(&format!("crasher-{n}"), &quiet);
            crashers.push(spec.addr());
            chaos = chaos.child(spec);
        }
        // Restarted by the supervisor after a backoff, not in place.
        let spec = crasher("backoff", &quiet)
            .backoff(Backoff::exponential(Duration::from_millis(1), Duration::from_millis(20)));
        crashers.push(spec.addr());
        chaos = chaos.child(spec);
        // A factory that fails now and then.
        let spec = {
            let (quiet, fail) = (Arc::clone(&quiet), Arc::clone(&builds_to_fail));
            ChildSpec::try_worker("fragile", move || {
                if fail.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                    return Err("chaos: the factory cannot build it");
                }
                Ok(Crasher { storm: Arc::clone(&quiet) })
            })
        };
        let fragile = spec.addr();
        chaos = chaos.child(spec);
        // A storm below a supervisor that gives up after 3 restarts in 1 s.
        let storm = crasher("storm", &storm_budget);
        let storm_addr = storm.addr();
        chaos = chaos.child(ChildSpec::supervisor(
            "squall",
            Supervisor::builder().intensity(3, Duration::from_secs(1)).child(storm),
        ));
        // A child that hangs ignoring stop, replaced through the API.
        let sleeper = crasher("sleeper", &quiet).shutdown(Duration::from_millis(100));
        let sleeper_addr = sleeper.addr();
        chaos = chaos.child(sleeper);
        let chaos_ref = chaos.handle();
        root.start_child(ChildSpec::supervisor("chaos", chaos)).expect("add the chaos subtree");

        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("chaos".into())
            .spawn(move || {
                let mut figures = ChaosFigures::default();
                let mut next_storm = Instant::now() + rng.millis(3000, 8000);
                let mut next_hang = Instant::now() + rng.millis(2000, 6000);
                while !stopping.load(Ordering::Relaxed) {
                    pause(&stopping, rng.millis(10, 40));
                    let now = Instant::now();
                    if now >= next_storm {
                        // Each start fails at once: the squall gives up, chaos restarts it.
                        storm_budget.store(3, Ordering::SeqCst);
                        let _ = storm_addr.try_tell(Jolt::Crash);
                        figures.storms += 1;
                        next_storm = now + rng.millis(5000, 20_000);
                    } else if now >= next_hang {
                        let _ = sleeper_addr.try_tell(Jolt::Hang(rng.millis(500, 2000)));
                        // Let it get stuck, then replace it.
                        pause(&stopping, Duration::from_millis(50));
                        chaos_ref.terminate_child("sleeper").expect("terminate the sleeper");
                        chaos_ref.restart_child("sleeper").expect("restart the sleeper");
                        figures.hangs += 1;
                        next_hang = now + rng.millis(5000, 20_000);
                    } else if rng.range(0, 10) == 0 {
                        builds_to_fail.store(rng.range(1, 3), Ordering::SeqCst);
                        let _ = fragile.try_tell(Jolt::Crash);
                        figures.crashes += 1;
                    } else {
                        let _ = rng.pick(&crashers).try_tell(Jolt::Crash);
                        figures.crashes += 1;
                    }
                }
                figures
            })
            .expect("spawn the chaos schedule");
        Chaos { stop, thread }
    }

    fn stop(self) -> ChaosFigures {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the chaos schedule panicked")
    }
}

// ---------------------------------------------------------------------------
// The report.

struct Outcome {
    /// When the soak started, as `date -u` prints it.
    started: String,
    seed: u64,
    duration: Duration,
    requests: RequestFigures,
    restarts: Restarts,
    chaos: ChaosFigures,
    injected: Injected,
    figures: Figures,
    ledger: LedgerSnapshot,
    unique: u64,
    tls_failures: u64,
    certificate_changes: u64,
}

impl Outcome {
    fn print(&self) {
        let f = &self.figures;
        let min = f.min.unwrap_or_default();
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!("SOAK started: {}", self.started);
        println!("SOAK seed: {}", self.seed);
        println!("SOAK duration: {:.1} s", self.duration.as_secs_f64());
        println!(
            "SOAK requests: {} ok, {} failed; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.requests.ok,
            self.requests.failed,
            self.requests.p50.as_secs_f64() * 1e3,
            self.requests.p99.as_secs_f64() * 1e3,
            self.requests.max_latency.as_secs_f64() * 1e3
        );
        println!(
            "SOAK restarts: {} in the chaos subtree ({} crashes sent, {} storms, {} hung children replaced, {} abandoned), {} of the batcher, {} elsewhere",
            self.restarts.chaos,
            self.chaos.crashes,
            self.chaos.storms,
            self.chaos.hangs,
            self.restarts.abandoned,
            self.restarts.batcher,
            self.restarts.other
        );
        let episodes: u32 = self.injected.count.values().sum();
        println!("SOAK fault episodes: {episodes}");
        for (fault, n) in &self.injected.count {
            println!(
                "SOAK   {fault}: {n} (slowest recovery {:.1} s)",
                self.injected.slowest.get(fault).copied().unwrap_or_default().as_secs_f64()
            );
        }
        println!(
            "SOAK TLS failures seen by the sink: {}, server certificate changes: {}",
            self.tls_failures, self.certificate_changes
        );
        println!(
            "SOAK RSS: warm-up peak {:.1} MiB, min {:.1} MiB, max {:.1} MiB (bound {:.1} MiB)",
            mib(f.warmup.rss_kib),
            mib(min.rss_kib),
            mib(f.max.rss_kib),
            mib(f.warmup.bound().rss_kib)
        );
        println!(
            "SOAK threads: warm-up peak {}, min {}, max {} (bound {})",
            f.warmup.threads,
            min.threads,
            f.max.threads,
            f.warmup.bound().threads
        );
        println!(
            "SOAK fds: warm-up peak {}, min {}, max {} (bound {})",
            f.warmup.fds,
            min.fds,
            f.max.fds,
            f.warmup.bound().fds
        );
        println!(
            "SOAK ledger samples: {} ({} balanced at the first read, largest motion {} events)",
            f.samples, f.balanced_first, f.worst_motion
        );
        let l = &self.ledger;
        println!(
            "SOAK events: emitted {}, delivered {}, dropped {} ({:?}), pending {}; collector distinct seqs {}; batches {}, attempts {}, retries {}, splits {}",
            l.accepted,
            l.delivered,
            l.dropped.total(),
            l.dropped,
            l.pending,
            self.unique,
            l.batches,
            l.attempts,
            l.retries,
            l.splits
        );
    }
}

/// The time of day for the report, as `date -u` prints it.
fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
