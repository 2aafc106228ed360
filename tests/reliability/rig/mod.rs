//! The rig shared by the reliability tests: a real collector behind a real
//! HTTPS event pipeline, request threads that keep working throughout, an API
//! actor for them to call, and readings of the process's resources from
//! /proc. [`faults`] builds the delivery-fault scenario on the same parts.
//! Polling, deadlines, temp dirs and test CAs come from `vigil-testkit`.
#![allow(dead_code, unreachable_pub)]

pub mod faults;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use vigil::events::{Config, Emitter, EventPipeline, EventsHandle, LedgerSnapshot};
use vigil::https::{HttpsSinkConfig, HttpsStats};
use vigil::{Actor, Addr, Backoff, BoxError, ChildSpec, Context, Reply, SupervisionEvent, WorkerSpec};
use vigil_collector::Collector;

pub use vigil_testkit::{DEADLINE, poll, wait_until};

/// The event request threads emit.
#[derive(Debug, Clone, Serialize)]
pub struct Ev {
    /// Unique per request thread and request.
    pub id: u64,
    /// The request thread that emitted it.
    pub thread: usize,
}

/// What request threads ask the API actor.
pub enum ApiMsg {
    /// Adds an amount and answers the running total.
    Charge(u64, Reply<u64>),
}

/// A healthy actor that request threads call on every request.
pub struct Api {
    total: u64,
}

impl Actor for Api {
    type Msg = ApiMsg;
    fn handle(&mut self, msg: ApiMsg, _: &mut Context<'_, ApiMsg>) -> Result<(), BoxError> {
        match msg {
            ApiMsg::Charge(amount, reply) => {
                self.total += amount;
                let _ = reply.send(self.total);
            }
        }
        Ok(())
    }
}

/// The API worker's spec and address.
pub fn api() -> (WorkerSpec<Api>, Addr<ApiMsg>) {
    let spec = ChildSpec::worker("api", || Api { total: 0 });
    let addr = spec.addr();
    (spec, addr)
}

/// Counters of the request threads.
#[derive(Default)]
pub struct RequestStats {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    pub emitted: AtomicU64,
    pub refused: AtomicU64,
    pub max_latency_us: AtomicU64,
    pub first_error: Mutex<Option<String>>,
}

/// What the request threads did, once stopped.
#[derive(Debug, Clone)]
pub struct RequestSummary {
    pub requests: u64,
    pub failed: u64,
    /// Events handed to `emit` and accepted.
    pub emitted: u64,
    /// Events `emit` refused (full or closed); the request itself succeeded.
    pub refused: u64,
    pub max_latency: Duration,
    pub first_error: Option<String>,
    /// The requests each thread served, by thread: thread `t` ran requests
    /// `0..per_thread[t]`.
    pub per_thread: Vec<u64>,
}

/// Plain request threads that do a unit of work every millisecond or so
/// until stopped. A unit of work that returns `Err` is a failed request.
pub struct Requests {
    pub stats: Arc<RequestStats>,
    stop: Arc<AtomicBool>,
    /// Each thread returns how many requests it served.
    threads: Vec<JoinHandle<u64>>,
}

impl Requests {
    /// Starts `n` threads running `work(thread, request_number)`, one
    /// request a millisecond.
    pub fn start<W>(n: usize, work: W) -> Requests
    where
        W: Fn(usize, u64, &RequestStats) -> Result<(), String> + Send + Sync + 'static,
    {
        Requests::paced(n, Duration::from_millis(1), work)
    }

    /// Like [`start`](Requests::start), pausing `pace` between two requests
    /// of one thread (request arrival, not a wait for anything).
    pub fn paced<W>(n: usize, pace: Duration, work: W) -> Requests
    where
        W: Fn(usize, u64, &RequestStats) -> Result<(), String> + Send + Sync + 'static,
    {
        let stats = Arc::new(RequestStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let work = Arc::new(work);
        let threads = (0..n)
            .map(|t| {
                let (stats, stop, work) = (Arc::clone(&stats), Arc::clone(&stop), Arc::clone(&work));
                std::thread::Builder::new()
                    .name(format!("request-{t}"))
                    .spawn(move || {
                        let mut i = 0u64;
                        while !stop.load(Ordering::Acquire) {
                            let started = Instant::now();
                            match work(t, i, &stats) {
                                Ok(()) => stats.ok.fetch_add(1, Ordering::Relaxed),
                                Err(e) => {
                                    stats.first_error.lock().get_or_insert(e);
                                    stats.failed.fetch_add(1, Ordering::Relaxed)
                                }
                            };
                            let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                            stats.max_latency_us.fetch_max(us, Ordering::Relaxed);
                            i += 1;
                            std::thread::sleep(pace);
                        }
                        i
                    })
                    .expect("spawn a request thread")
            })
            .collect();
        Requests { stats, stop, threads }
    }

    /// Request threads that call the API actor and emit one event per request.
    pub fn charging(n: usize, api: Addr<ApiMsg>, emitter: Emitter<Ev>) -> Requests {
        Requests::start(n, move |t, i, stats| {
            api.call(|reply| ApiMsg::Charge(1, reply), Duration::from_secs(5))
                .map_err(|e| format!("api call failed: {e}"))?;
            emit(&emitter, Ev { id: (t as u64) << 40 | i, thread: t }, stats);
            Ok(())
        })
    }

    pub fn ok(&self) -> u64 {
        self.stats.ok.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> u64 {
        self.stats.failed.load(Ordering::Relaxed)
    }

    /// Waits until `n` more requests succeeded than now.
    pub fn wait_for_more(&self, n: u64) {
        let target = self.ok() + n;
        wait_until(&format!("{n} more requests succeeded"), || self.ok() >= target);
    }

    pub fn stop(self) -> RequestSummary {
        self.stop.store(true, Ordering::Release);
        let per_thread = self.threads.into_iter().map(|t| t.join().expect("a request thread panicked")).collect();
        let s = &self.stats;
        let ok = s.ok.load(Ordering::Relaxed);
        let failed = s.failed.load(Ordering::Relaxed);
        RequestSummary {
            requests: ok + failed,
            failed,
            emitted: s.emitted.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            max_latency: Duration::from_micros(s.max_latency_us.load(Ordering::Relaxed)),
            first_error: s.first_error.lock().clone(),
            per_thread,
        }
    }
}

/// Emits an event and counts the outcome; a refused event does not fail the request.
pub fn emit(emitter: &Emitter<Ev>, ev: Ev, stats: &RequestStats) {
    match emitter.emit(ev) {
        Ok(()) => stats.emitted.fetch_add(1, Ordering::Relaxed),
        Err(_) => stats.refused.fetch_add(1, Ordering::Relaxed),
    };
}

/// A collector on loopback and an event pipeline shipping to it over HTTPS.
pub struct Pipeline {
    pub collector: Collector,
    pub emitter: Emitter<Ev>,
    /// The pipeline's child spec (a supervisor with the batcher); clone it
    /// into a tree.
    pub spec: ChildSpec,
    pub handle: EventsHandle,
    pub https: HttpsStats,
    pub trust: PathBuf,
}

/// Short pipeline timings for tests: ships every 20 ms, retries fast.
pub fn fast_config() -> Config {
    Config::default()
        .capacity(200_000)
        .max_batch_events(256)
        .max_delay(Duration::from_millis(20))
        .retry_backoff_min(Duration::from_millis(10))
        .retry_backoff_max(Duration::from_millis(200))
        .max_batch_age(Duration::from_secs(600))
}

impl Pipeline {
    /// Starts a collector and builds a pipeline to it with `config`.
    pub fn start(config: Config) -> Pipeline {
        Pipeline::start_with(config, |c| c)
    }

    /// Like [`start`](Pipeline::start), adjusting the sink's config.
    pub fn start_with(config: Config, adjust: impl FnOnce(HttpsSinkConfig) -> HttpsSinkConfig) -> Pipeline {
        let collector = Collector::builder().start().expect("start the collector");
        let trust = collector.ca_pem_path();
        let sink = adjust(
            HttpsSinkConfig::new(collector.endpoint())
                .trust_file(&trust)
                .timeout_connect(Some(Duration::from_secs(2)))
                .timeout_global(Some(Duration::from_secs(5))),
        );
        let https = sink.stats();
        let (emitter, spec, handle) = EventPipeline::builder(config)
            .sink(move || sink.build())
            .restart_backoff(Backoff::exponential(Duration::from_millis(20), Duration::from_millis(500)))
            .build()
            .expect("build the pipeline");
        Pipeline { collector, emitter, spec, handle, https, trust }
    }

    pub fn ledger(&self) -> LedgerSnapshot {
        self.handle.ledger()
    }

    /// Delivers everything queued, then closes the pipeline. Call before
    /// shutting the tree down.
    pub fn flush_and_close(&self) {
        if let Err(e) = self.handle.flush(DEADLINE) {
            panic!("the final flush failed: {e}; ledger {}", self.ledger());
        }
        self.handle.close();
    }

    /// After the tree is down: every accepted event was delivered exactly
    /// once (the collector saw each sequence number), none is pending or
    /// dropped. Returns the number of events.
    pub fn assert_nothing_lost(&self) -> u64 {
        let ledger = self.ledger();
        assert!(ledger.is_balanced(), "{ledger}");
        assert_eq!(ledger.pending, 0, "{ledger}");
        assert_eq!(ledger.dropped.total(), 0, "{ledger}");
        assert_eq!(ledger.delivered, ledger.accepted, "{ledger}");
        assert_eq!(self.collector.seqs().len() as u64, ledger.delivered, "collector vs ledger: {ledger}");
        ledger.accepted
    }
}

/// The `Restarting` events for `path` among `events`.
pub fn restarts_of(events: &[SupervisionEvent], path: &str) -> usize {
    events.iter().filter(|e| matches!(e, SupervisionEvent::Restarting { path: p, .. } if p == path)).count()
}

/// One row of the reliability table, printed for `docs/reliability.md`.
#[derive(Debug)]
pub struct Row<'a> {
    pub fault: &'a str,
    pub requests: &'a RequestSummary,
    pub restarts: usize,
    pub events: String,
    pub recover: String,
}

impl Row<'_> {
    pub fn print(&self) {
        println!(
            "ROW | {} | {} requests, {} failed (max latency {:.1} ms) | {} | {} | {} |",
            self.fault,
            self.requests.requests,
            self.requests.failed,
            self.requests.max_latency.as_secs_f64() * 1e3,
            self.restarts,
            self.events,
            self.recover
        );
    }
}

/// Milliseconds with one decimal, for rows.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// A line of /proc/self/status, e.g. `Threads` or `VmRSS`, as a number.
fn proc_status(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(':')))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/self/status"))
}

/// The number of OS threads in this process.
pub fn threads() -> u64 {
    proc_status("Threads")
}

/// Resident set size in KiB, from /proc/self/statm (resident pages × page size).
pub fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("resident pages in statm");
    pages * page_kib()
}

/// The page size in KiB (`getconf PAGESIZE`), which statm counts in.
fn page_kib() -> u64 {
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        let out = std::process::Command::new("getconf").arg("PAGESIZE").output().expect("run getconf PAGESIZE");
        let bytes: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("getconf PAGESIZE prints a number");
        bytes / 1024
    })
}

/// The number of open file descriptors.
pub fn fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").expect("read /proc/self/fd").count() as u64
}
