//! The main job: replay the incident end to end.
//!
//! A payments service (tiny_http, handlers as Vigil actors) emits one event
//! per request into a supervised batcher that ships them over HTTPS to an
//! embedded collector. Halfway through, the collector rotates to a
//! certificate from a CA the service does not trust; after an outage the
//! operator appends the new CA to the trust file. Vigil keeps every request
//! and every event; `--naive` runs the incident's original design beside it
//! for comparison.
//!
//! ```text
//! cargo run --release --example incident -- [--duration 20] [--rps 200] [--clients 8]
//!     [--outage 7] [--naive] [--json] [--plot timeline.svg]
//!     [--endpoint URL --ca FILE [--ca FILE ...]]
//! ```

mod load;
mod naive;
mod report;
mod scenario;
mod service;

use std::collections::BTreeMap;
use std::error::Error;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use load::{Recorder, percentile_ms};
use report::{NaiveFigures, Point, Report, RequestFigures, RestartSummary};
use scenario::{Design, Phase, Snapshot};

const USAGE: &str = "usage: incident [--duration SECS] [--rps N] [--clients N] [--outage SECS] [--naive] [--json] \
[--plot FILE.svg] [--endpoint URL --ca FILE [--ca FILE ...]]";

struct Args {
    duration: Duration,
    rps: u32,
    clients: usize,
    outage: Option<Duration>,
    naive: bool,
    json: bool,
    plot: Option<PathBuf>,
    endpoint: Option<String>,
    cas: Vec<PathBuf>,
    work: Duration,
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        duration: Duration::from_secs(20),
        rps: 200,
        clients: 8,
        outage: None,
        naive: false,
        json: false,
        plot: None,
        endpoint: None,
        cas: Vec::new(),
        work: Duration::from_millis(2),
    };
    let secs = |v: Option<String>, flag: &str| -> Result<Duration, String> {
        let v = v.ok_or(format!("{flag} needs a value"))?;
        v.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .ok_or(format!("{flag}: {v:?} is not a positive number of seconds"))
    };
    while let Some(flag) = argv.next() {
        match flag.as_str() {
            "--duration" => args.duration = secs(argv.next(), "--duration")?,
            "--outage" => args.outage = Some(secs(argv.next(), "--outage")?),
            "--rps" => {
                args.rps = argv
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--rps needs a positive integer")?
            }
            "--clients" => {
                args.clients = argv
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .ok_or("--clients needs a positive integer")?
            }
            "--work-ms" => {
                args.work =
                    Duration::from_millis(argv.next().and_then(|v| v.parse().ok()).ok_or("--work-ms needs a number")?)
            }
            "--naive" => args.naive = true,
            "--json" => args.json = true,
            "--plot" => args.plot = Some(argv.next().ok_or("--plot needs a file name")?.into()),
            "--endpoint" => args.endpoint = Some(argv.next().ok_or("--endpoint needs a URL")?),
            "--ca" => args.cas.push(argv.next().ok_or("--ca needs a file")?.into()),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.endpoint.is_some() == args.cas.is_empty() {
        return Err("--endpoint and --ca go together".to_owned());
    }
    if args.endpoint.is_some() && args.naive {
        return Err("--naive needs the embedded collector (it scripts the rotation)".to_owned());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().map(String::as_str) == Some("--naive-child") {
        return naive_child(argv.skip(1));
    }
    let args = match parse_args(argv) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    // Quiet by default: the status line and the report tell the story; set
    // RUST_LOG=vigil=info to see every restart line as it happens.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("off")).init();
    match run(&args) {
        Ok(report) => {
            let ok = report.requests.requests_failed == 0 && report.events_pending == 0 && report.ledger_balanced;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            } else {
                report.print_table();
            }
            if ok { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(e) => {
            eprintln!("incident: {e}");
            ExitCode::from(2)
        }
    }
}

fn naive_child(mut argv: impl Iterator<Item = String>) -> ExitCode {
    let (mut port, mut endpoint, mut trust, mut work) = (0, String::new(), PathBuf::new(), 2);
    while let Some(flag) = argv.next() {
        let value = argv.next().unwrap_or_default();
        match flag.as_str() {
            "--port" => port = value.parse().unwrap_or(0),
            "--endpoint" => endpoint = value,
            "--trust" => trust = value.into(),
            "--work-ms" => work = value.parse().unwrap_or(2),
            _ => {}
        }
    }
    naive::child_main(port, &endpoint, &trust, Duration::from_millis(work))
}

fn run(args: &Args) -> Result<Report, Box<dyn Error>> {
    let vigil = scenario::run(args, Design::Vigil)?;
    // The incident's design, the same script a second time, in a child process.
    let naive = if args.naive { Some(scenario::run(args, Design::Naive)?) } else { None };
    if let Some(path) = &args.plot {
        report::plot(path, &vigil.timeline, &vigil.markers, naive.as_ref().map(|n| (&n.timeline[..], &n.markers)))?;
        if !args.json {
            println!("timeline written to {}", path.display());
        }
    }
    let samples = vigil.requests.samples();
    let p99_in = |from: f64, to: f64| {
        let mut l: Vec<Duration> =
            samples.iter().filter(|s| (from..to).contains(&s.at.as_secs_f64())).map(|s| s.latency).collect();
        round2(percentile_ms(&mut l, 0.99))
    };
    let phases = vigil.phases;
    let (healthy_p99, outage_p99) = match (phases.rotation_s, phases.fix_s) {
        (Some(r), Some(f)) => (Some(p99_in(0.0, r)), Some(p99_in(r, f))),
        _ => (None, None),
    };
    let mut grouped: BTreeMap<(String, String), RestartSummary> = BTreeMap::new();
    for (t, path, reason) in &vigil.restart_log {
        let short: String = reason.chars().take(200).collect();
        let entry = grouped.entry((path.clone(), short.clone())).or_insert(RestartSummary {
            path: path.clone(),
            count: 0,
            reason: short,
            first_s: (t * 10.0).round() / 10.0,
            last_s: 0.0,
        });
        entry.count += 1;
        entry.last_s = (t * 10.0).round() / 10.0;
    }
    let requests = figures(&vigil.requests);
    let ledger = vigil.ledger.ok_or("the Vigil run has a ledger")?;
    let https = vigil.https.ok_or("the Vigil run has HTTPS stats")?;
    Ok(Report {
        requests,
        latency_p99_healthy_ms: healthy_p99,
        latency_p99_outage_ms: outage_p99,
        events_emitted: ledger.accepted,
        events_delivered: ledger.delivered,
        events_dropped: ledger.dropped.total(),
        events_dropped_by_reason: serde_json::from_value(serde_json::to_value(ledger.dropped)?)?,
        events_pending: ledger.pending,
        ledger_balanced: ledger.is_balanced(),
        collector_unique_events: vigil.collector_unique_events,
        batcher_restarts: vigil.restarts,
        tls_failures: https.tls_failures,
        cert_rotations: https.certificate_changes,
        server_certificate: https.server_certificate.map(|c| format!("{} (issuer {})", c.subject, c.issuer)),
        restarts: grouped.into_values().collect(),
        timeline: phases,
        duration_s: vigil.duration_s,
        naive: naive
            .map(|n| NaiveFigures { requests: self::figures(&n.requests), crashes: n.markers.naive_crashes.len() }),
    })
}

fn figures(recorder: &Recorder) -> RequestFigures {
    let mut latencies: Vec<Duration> = recorder.samples().iter().map(|s| s.latency).collect();
    RequestFigures {
        requests_total: recorder.total(),
        requests_failed: recorder.failed.load(std::sync::atomic::Ordering::Relaxed),
        latency_p50_ms: round2(percentile_ms(&mut latencies, 0.50)),
        latency_p99_ms: round2(percentile_ms(&mut latencies, 0.99)),
        latency_max_ms: round2(percentile_ms(&mut latencies, 1.0)),
        first_error: recorder.first_error(),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The live status line: redrawn in place on a terminal, a line a second
/// otherwise (and nothing with `--json`).
struct Status {
    quiet: bool,
    tty: bool,
    design: Design,
    last: Mutex<Instant>,
}

impl Status {
    fn new(json: bool, design: Design) -> Status {
        Status { quiet: json, tty: std::io::stderr().is_terminal(), design, last: Mutex::new(Instant::now()) }
    }

    fn show(&self, phase: Phase, point: &Point, s: &Snapshot, restarts: u64) {
        if self.quiet {
            return;
        }
        let line = match self.design {
            Design::Vigil => format!(
                "[Vigil {:>5.1}s] {:<32} req/s {:>4.0}  failed {:>3}  events: emitted {:>6} delivered {:>6} buffered {:>6}  batcher restarts {:>2}",
                s.t,
                phase.label(),
                point.requests_per_s,
                s.failed,
                s.emitted,
                s.delivered,
                s.pending,
                restarts,
            ),
            Design::Naive => format!(
                "[naive {:>5.1}s] {:<32} req/s {:>4.0}  failed {:>3}",
                s.t,
                phase.label(),
                point.requests_per_s,
                s.failed,
            ),
        };
        let mut stderr = std::io::stderr().lock();
        if self.tty {
            let _ = write!(stderr, "\r\x1b[2K{line}");
            let _ = stderr.flush();
        } else {
            let mut last = self.last.lock();
            if last.elapsed() >= Duration::from_secs(1) || phase == Phase::Draining {
                *last = Instant::now();
                let _ = writeln!(stderr, "{line}");
            }
        }
    }

    fn finish(&self) {
        if !self.quiet && self.tty {
            eprintln!();
        }
    }
}

/// A scratch directory removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let path = std::env::temp_dir().join(format!("vigil-incident-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
