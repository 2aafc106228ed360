//! The main job: replay the incident end to end, Vigil beside the design
//! that failed.
//!
//! A payments service (tiny_http, handlers as Vigil actors) emits one event
//! per request into a supervised batcher that ships them over HTTPS to an
//! embedded collector. A quarter of the way through, the collector rotates to
//! a certificate from a CA the service does not trust; after an outage the
//! operator appends the new CA to the trust file. Vigil keeps every request
//! and every event. Then the same script runs against the incident's original
//! design (a plain batcher thread whose unhandled error kills the process),
//! for contrast; `--vigil-only` skips that second run.
//!
//! ```text
//! cargo run --release --example incident -- --help
//! ```

mod crash;
mod health;
mod load;
mod naive;
mod report;
mod scenario;
mod service;

use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use load::{Recorder, percentile_ms};
use report::{NaiveFigures, Report, RequestFigures, RestartSummary};
use scenario::{Design, Phase, Snapshot};

/// Replays the incident: a CA rotation the service does not trust, an
/// outage, the operator's fix. Vigil runs first, then the naive design with
/// the same script, and a table compares them.
#[derive(Debug, Parser)]
#[command(name = "incident", after_help = AFTER_HELP)]
pub(crate) struct Args {
    /// Seconds of load against each design.
    #[arg(long, value_name = "SECS", default_value = "20", value_parser = positive_secs)]
    duration: Duration,
    /// Requests per second the load generator sends.
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    rps: u32,
    /// Client threads sending the requests.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    clients: u16,
    /// Seconds from the CA rotation to the operator's fix [default: 35% of
    /// --duration]. The rotation comes at 25% of --duration; the fix must
    /// come before the end.
    #[arg(long, value_name = "SECS", value_parser = positive_secs)]
    outage: Option<Duration>,
    /// Seconds the collector hangs after the outage: it accepts connections
    /// and reads requests but never answers. The batcher runs under the
    /// watchdog (hang timeout 2 s) and the sink's own timeouts are set
    /// longer than the hang, so only the watchdog can see it. Vigil only
    /// [default: no hang phase].
    #[arg(long, value_name = "SECS", value_parser = positive_secs, conflicts_with = "endpoint")]
    hang: Option<Duration>,
    /// Simulated processing time of one request, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2)]
    work_ms: u64,
    /// Run Vigil only; skip the naive design's run [default: both run].
    #[arg(long, conflicts_with = "naive")]
    vigil_only: bool,
    /// Run the naive design after Vigil. This is the default; the flag is
    /// kept for scripts written when it was not.
    #[arg(long)]
    naive: bool,
    /// Print the report as JSON on stdout instead of the table (no live
    /// display) [default: table].
    #[arg(long)]
    json: bool,
    /// Write the timeline to FILE, an SVG (the name must end in .svg)
    /// [default: no plot].
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Deliver Vigil's events to this external HTTPS collector instead of the
    /// embedded one (no scripted rotation; Vigil only) [default: embedded
    /// collector on loopback].
    #[arg(long, value_name = "URL", requires = "cas", conflicts_with_all = ["naive", "outage"])]
    endpoint: Option<String>,
    /// A PEM file of CA certificates to trust for --endpoint; repeat for
    /// several [default: none].
    #[arg(long = "ca", value_name = "FILE", requires = "endpoint")]
    cas: Vec<PathBuf>,
    /// Serve Vigil's health on HOST:PORT while it runs: /livez, /readyz,
    /// /startupz, /stats and /metrics (Prometheus). With it, or under
    /// systemd (NOTIFY_SOCKET set), SIGTERM ends the replay early with an
    /// orderly shutdown [default: no endpoint].
    #[arg(long, value_name = "ADDR", value_parser = health_addr)]
    health: Option<String>,
    /// How Vigil ships its events: `ndjson` to the collector's /ingest, or
    /// `otlp`, OTLP/HTTP JSON logs to the embedded collector's /v1/logs (with
    /// --endpoint, give the receiver's https://HOST:PORT/v1/logs). The naive
    /// design always sends NDJSON.
    #[arg(long, value_enum, value_name = "ENCODING", default_value_t = EventEncoding::Ndjson)]
    encoding: EventEncoding,
    /// In the outage, near the backlog's height, kill the service process
    /// (SIGKILL) and start it again after 300 ms, as systemd would. Vigil
    /// then runs in a child process with its events spooled to disk (see
    /// --no-spool); the report says what each design lost [default: no crash].
    /// Not with --health: the probes would die with the killed process.
    #[arg(long, conflicts_with_all = ["endpoint", "hang", "health"])]
    crash: bool,
    /// With --crash: Vigil's pipeline without a spool, to see what the crash
    /// costs it then [default: with a spool].
    #[arg(long, requires = "crash")]
    no_spool: bool,
}

/// The values of `--encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum EventEncoding {
    /// One JSON record per line, POSTed to /ingest.
    Ndjson,
    /// One OTLP ExportLogsServiceRequest per batch, POSTed to /v1/logs.
    Otlp,
}

const AFTER_HELP: &str = "Exit status: 0 when Vigil failed no request and delivered every event; 1 when it did not (the reason is on stderr); 2 for bad arguments or inputs.
Logs: quiet by default; RUST_LOG=vigil=info prints each restart as it happens.";

impl Args {
    /// Whether the naive design runs after Vigil.
    pub(crate) fn contrast(&self) -> bool {
        !self.vigil_only && self.endpoint.is_none()
    }

    /// Whether Vigil ships OTLP/HTTP.
    pub(crate) fn otlp(&self) -> bool {
        self.encoding == EventEncoding::Otlp
    }

    pub(crate) fn work(&self) -> Duration {
        Duration::from_millis(self.work_ms)
    }

    /// When the scripted rotation and fix happen.
    pub(crate) fn script(&self) -> (Duration, Duration) {
        let rotate_at = self.duration.mul_f64(0.25);
        (rotate_at, rotate_at + self.outage.unwrap_or(self.duration.mul_f64(0.35)))
    }

    /// When the collector hangs and answers again: a quarter of the way
    /// from the fix to the end, for `--hang` seconds.
    pub(crate) fn hang_window(&self) -> Option<(Duration, Duration)> {
        let (_, fix_at) = self.script();
        let start = fix_at + self.duration.saturating_sub(fix_at).mul_f64(0.25);
        self.hang.map(|hang| (start, start + hang))
    }

    /// Checks what clap cannot: contradictions between values, and the
    /// files and endpoint the run will need. Runs before anything starts.
    fn check(&self) -> Result<(), String> {
        let (rotate_at, fix_at) = self.script();
        if self.endpoint.is_none() && fix_at >= self.duration {
            return Err(format!(
                "--outage {:.1} with --duration {:.1}: the rotation comes at {:.1} s and the fix at {:.1} s, after \
                 the run ends; give a shorter --outage or a longer --duration",
                self.outage.unwrap_or_default().as_secs_f64(),
                self.duration.as_secs_f64(),
                rotate_at.as_secs_f64(),
                fix_at.as_secs_f64(),
            ));
        }
        if let Some((start, end)) = self.hang_window()
            && end >= self.duration
        {
            return Err(format!(
                "--hang {:.1} with --duration {:.1}: the collector would hang from {:.1} s to {:.1} s, past the end \
                 of the run; give a shorter --hang or a longer --duration",
                end.saturating_sub(start).as_secs_f64(),
                self.duration.as_secs_f64(),
                start.as_secs_f64(),
                end.as_secs_f64(),
            ));
        }
        for ca in &self.cas {
            let text =
                std::fs::read_to_string(ca).map_err(|e| format!("--ca {}: cannot read it: {e}", ca.display()))?;
            if !text.contains("-----BEGIN CERTIFICATE-----") {
                return Err(format!("--ca {}: no PEM certificate in it", ca.display()));
            }
        }
        if let Some(plot) = &self.plot {
            check_plot_path(plot)?;
        }
        if let Some(endpoint) = &self.endpoint {
            check_endpoint(endpoint)?;
        }
        Ok(())
    }
}

/// `--health`: a socket address, checked before anything starts.
fn health_addr(v: &str) -> Result<String, String> {
    v.parse::<std::net::SocketAddr>()
        .map(|_| v.to_owned())
        .map_err(|_| format!("{v:?} is not HOST:PORT with a numeric host, such as 127.0.0.1:9464"))
}

fn positive_secs(v: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{v:?} is not a positive number of seconds"))
}

/// The plot's file: an `.svg` in a directory that exists.
fn check_plot_path(plot: &Path) -> Result<(), String> {
    let extension = plot.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    if extension.as_deref() != Some("svg") {
        return Err(format!(
            "--plot {}: the plot is written as SVG; give a file name ending in .svg (convert it to PNG afterwards \
             if you need one)",
            plot.display()
        ));
    }
    let dir = match plot.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!("--plot {}: directory {} does not exist", plot.display(), dir.display()));
    }
    Ok(())
}

/// The endpoint: an https URL whose host answers on its port.
fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let rest =
        endpoint.strip_prefix("https://").ok_or_else(|| format!("--endpoint {endpoint}: not an https:// URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let address = if authority.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok()) {
        authority.to_owned()
    } else {
        format!("{authority}:443")
    };
    use std::net::ToSocketAddrs;
    let addrs: Vec<_> = address
        .to_socket_addrs()
        .map_err(|e| format!("--endpoint {endpoint}: cannot resolve {address}: {e}"))?
        .collect();
    let mut last = None;
    for addr in addrs {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(format!("{addr}: {e}")),
        }
    }
    Err(format!(
        "--endpoint {endpoint}: unreachable ({}); is the collector running?",
        last.unwrap_or_else(|| format!("{address} resolves to no address"))
    ))
}

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().map(String::as_str) == Some("--naive-child") {
        return naive_child(argv.skip(1));
    }
    if argv.peek().map(String::as_str) == Some("--vigil-child") {
        return crash::child_main(argv.skip(1));
    }
    // --help and --version exit 0 here; bad arguments exit 2 with clap's message.
    let args = Args::parse();
    if let Err(message) = args.check() {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    // The live display goes to stdout, and only when stdout is a terminal.
    let display = if args.json { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stdout() };
    let multi = MultiProgress::with_draw_target(display);
    // Quiet by default: the display and the report tell the story; set
    // RUST_LOG=vigil=info to see every restart line as it happens. Log lines
    // are written around the live display, never through it.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("off"))
        .target(env_logger::Target::Pipe(Box::new(AroundDisplay(multi.clone()))))
        .init();
    let report = match run(&args, &multi) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("incident: {e}");
            return ExitCode::from(1);
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => eprintln!("incident: cannot write the JSON report: {e}"),
        }
    } else {
        report.print_table(terminal_width());
    }
    let mut failed = report.shortfalls();
    if let Some((path, error)) = &report.plot_error {
        failed.push(format!("cannot write the plot {}: {error}", path.display()));
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        for why in failed {
            eprintln!("incident: {why}");
        }
        ExitCode::from(1)
    }
}

/// stderr, with the live display cleared while a log line is written.
struct AroundDisplay(MultiProgress);

impl Write for AroundDisplay {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.suspend(|| std::io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The width to fit the table's long lines into, when stdout is a terminal.
fn terminal_width() -> Option<usize> {
    console::Term::stdout().size_checked().map(|(_, columns)| usize::from(columns))
}

fn naive_child(mut argv: impl Iterator<Item = String>) -> ExitCode {
    let (mut port, mut endpoint, mut trust, mut work, mut seq_base) = (0, String::new(), PathBuf::new(), 2, 0);
    while let Some(flag) = argv.next() {
        let value = argv.next().unwrap_or_default();
        match flag.as_str() {
            "--port" => port = value.parse().unwrap_or(0),
            "--endpoint" => endpoint = value,
            "--trust" => trust = value.into(),
            "--work-ms" => work = value.parse().unwrap_or(2),
            "--seq-base" => seq_base = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    naive::child_main(port, &endpoint, &trust, Duration::from_millis(work), seq_base)
}

fn run(args: &Args, multi: &MultiProgress) -> Result<Report, Box<dyn Error>> {
    let header = multi.add(ProgressBar::new_spinner().with_style(ProgressStyle::with_template("{msg}")?));
    header.set_message(Status::header());
    let vigil = scenario::run(args, Design::Vigil, &Status::new(multi, Design::Vigil)?)?;
    // The incident's design, the same script a second time, in a child process.
    let naive = if args.contrast() {
        Some(scenario::run(args, Design::Naive, &Status::new(multi, Design::Naive)?)?)
    } else {
        None
    };
    header.finish();
    let plot_error = args.plot.as_ref().and_then(|path| {
        match report::plot(path, &vigil.timeline, &vigil.markers, naive.as_ref().map(|n| (&n.timeline[..], &n.markers)))
        {
            Ok(()) => {
                if !args.json {
                    println!("timeline written to {}", path.display());
                }
                None
            }
            Err(e) => Some((path.clone(), e.to_string())),
        }
    });
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
    // Restart lines with the same path and reason, grouped, in the order of
    // their first line; the full text is kept (the table shortens it to the
    // terminal's width).
    let mut restarts: Vec<RestartSummary> = Vec::new();
    for (t, path, reason) in &vigil.restart_log {
        let at = (t * 10.0).round() / 10.0;
        match restarts.iter_mut().find(|r| &r.path == path && &r.reason == reason) {
            Some(group) => {
                group.count += 1;
                group.last_s = at;
            }
            None => restarts.push(RestartSummary {
                path: path.clone(),
                count: 1,
                reason: reason.clone(),
                first_s: at,
                last_s: at,
            }),
        }
    }
    let requests = figures(&vigil.requests);
    let ledger = vigil.ledger.ok_or("the Vigil run has a ledger")?;
    let https = crash::HttpsFigures::of(vigil.https, vigil.child.as_ref()).ok_or("the Vigil run has HTTPS stats")?;
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
        hangs_detected: vigil.hangs_detected,
        abandoned_threads: vigil.abandoned_threads,
        hang_phase: args.hang_window().is_some(),
        tls_failures: https.tls_failures,
        cert_rotations: https.cert_rotations,
        server_certificate: https.server_certificate,
        last_sink_error: https.last_error,
        restarts,
        readiness_before_outage: vigil.readiness.clone(),
        timeline: phases,
        duration_s: vigil.duration_s,
        naive: naive.map(|n| {
            let requests = self::figures(&n.requests);
            let emitted = requests.requests_total - requests.requests_failed;
            let delivered = n.collector_unique_events.unwrap_or(0);
            NaiveFigures {
                crashes: n.markers.naive_crashes.len(),
                events_emitted: emitted,
                events_delivered: delivered,
                events_lost: emitted.saturating_sub(delivered),
                duration_s: n.duration_s,
                requests,
                crash: n.crash,
            }
        }),
        crash: vigil.crash,
        plot_error,
        health_transitions: vigil.health_transitions,
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

/// One design's row of the live display, under a header row: redrawn in
/// place by `indicatif`, at most 79 columns, hidden when stdout is not a
/// terminal (or with `--json`).
pub(crate) struct Status {
    bar: ProgressBar,
    design: Design,
}

impl Status {
    fn new(multi: &MultiProgress, design: Design) -> Result<Status, Box<dyn Error>> {
        let bar = multi.add(ProgressBar::new_spinner().with_style(ProgressStyle::with_template("{msg}")?));
        Ok(Status { bar, design })
    }

    fn header() -> String {
        format!(
            "{:<6}{:>6}  {:<8}{:>8}{:>7}{:>9}{:>10}{:>9}{:>10}",
            "design", "time", "phase", "requests", "failed", "emitted", "delivered", "buffered", "restarts"
        )
    }

    /// The row: what the design has done so far. For the naive design,
    /// "emitted" counts answered requests (one event each), "buffered" is not
    /// known, and "restarts" are process restarts after a crash.
    pub(crate) fn show(&self, phase: Phase, s: &Snapshot, restarts: u64) {
        let buffered = match self.design {
            Design::Vigil => s.pending.to_string(),
            Design::Naive => "-".to_owned(),
        };
        self.bar.set_message(format!(
            "{:<6}{:>5.1}s  {:<8}{:>8}{:>7}{:>9}{:>10}{:>9}{:>10}",
            self.design.name(),
            s.t,
            phase.short(),
            s.ok + s.failed,
            s.failed,
            s.emitted,
            s.delivered,
            buffered,
            restarts,
        ));
    }

    pub(crate) fn finish(&self) {
        self.bar.finish();
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
