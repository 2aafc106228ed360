//! `--crash`: in the outage, with the backlog near its height, the service
//! process is killed with SIGKILL and started again after a pause, as
//! systemd's `Restart=on-failure` with `RestartSec=300ms` would.
//!
//! To be killed, Vigil's service runs in a child process (`--vigil-child`,
//! as the naive design does with `--naive-child`), with the event pipeline's
//! spool in a directory that outlives the process (or none, `--no-spool`).
//! The child prints one JSON line ([`ChildLine`]) every 20 ms: its ledger,
//! its restart lines and its HTTPS figures; closing its stdin is the orderly
//! end (flush, close, shutdown, one last line).
//!
//! What a crash loses is counted from the outside, one event per answered
//! request, against what was delivered or is still accounted for:
//! - Vigil with a spool: the next process replays the backlog from disk and
//!   its ledger holds over both lives, so the loss is the answered requests
//!   its lifetime ledger does not know (events emitted in the last few
//!   milliseconds, not yet taken by the spool writer).
//! - Vigil without a spool: the killed process's ledger dies with it; the
//!   loss is what it had not delivered, its whole backlog.
//! - The naive design: the killed incarnation's events, held in memory.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use vigil::SupervisionEvent;
use vigil::events::{EventsHandle, LedgerSnapshot};
use vigil::https::{HttpsStats, HttpsStatsSnapshot};
use vigil_collector::Collector;

use crate::load::{Recorder, Sample};
use crate::naive;
use crate::service::{ServiceConfig, VigilService};
use crate::{Args, round2};

/// RestartSec: what the process manager waits before starting the service again.
const RESTART_SEC: Duration = Duration::from_millis(300);
/// How often the child reports (the resolution of the first delivery after
/// the fix, with `--crash`).
const REPORT_EVERY: Duration = Duration::from_millis(20);
/// The window before the kill whose events a spool may lose: the spool
/// writer takes events every 10 ms; the rest is scheduling on a loaded host.
const WRITER_WINDOW: Duration = Duration::from_millis(50);

/// When the kill comes: 80% of the way from the rotation to the fix.
pub(crate) fn crash_at(args: &Args) -> Duration {
    let (rotate_at, fix_at) = args.script();
    rotate_at + fix_at.saturating_sub(rotate_at).mul_f64(0.8)
}

/// What the crash cost one design, for the report (`--json` flattens it).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CrashFigures {
    /// When the process was killed, and how long until its successor served.
    pub(crate) crash_at_s: f64,
    pub(crate) crash_downtime_s: f64,
    /// Vigil: whether its pipeline had a spool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) spool: Option<bool>,
    /// Events not yet delivered when the process was killed: Vigil's
    /// pending count in its last report; the naive design's events held.
    pub(crate) backlog_at_crash: u64,
    /// Answered requests whose event was neither delivered nor accounted
    /// for after the crash.
    pub(crate) events_lost_in_crash: u64,
    /// Events the restarted process replayed from the spool.
    pub(crate) events_recovered: u64,
    /// Requests that failed from 1 s before the kill until 1 s after the
    /// successor served (the process was down); not counted as Vigil's failures.
    pub(crate) requests_failed_in_crash: u64,
    /// Requests answered in the 50 ms before the kill: about what a spool
    /// may lose (emitted, not yet on disk).
    pub(crate) crash_window_events: u64,
}

impl CrashFigures {
    /// What the crash cost Vigil beyond what its design allows, if anything.
    pub(crate) fn shortfall(&self) -> Option<String> {
        match self.spool {
            Some(true) if self.events_lost_in_crash > self.crash_window_events => Some(format!(
                "the crash lost {} events with a spool, more than the {} answered in the last {} ms before the kill",
                self.events_lost_in_crash,
                self.crash_window_events,
                WRITER_WINDOW.as_millis()
            )),
            Some(false) if self.events_lost_in_crash > 0 => Some(format!(
                "the crash lost {} events: without a spool (--no-spool) the backlog dies with the process",
                self.events_lost_in_crash
            )),
            _ => None,
        }
    }
}

/// The verdict's words on the crash.
pub(crate) fn verdict(crash: &CrashFigures) -> String {
    format!(
        " The kill cost it {} events ({} recovered from disk) and {} requests while it was down.",
        crash.events_lost_in_crash, crash.events_recovered, crash.requests_failed_in_crash
    )
}

/// The table's rows for the crash: Vigil's figures, and the naive design's.
pub(crate) fn rows(vigil: &CrashFigures, naive: Option<&CrashFigures>, row: &dyn Fn(&str, String, Option<String>)) {
    let spool = if vigil.spool == Some(true) { "with spool" } else { "no spool" };
    row(
        &format!("killed at {:.1} s, down {:.1} s", vigil.crash_at_s, vigil.crash_downtime_s),
        spool.to_owned(),
        naive.map(|n| format!("at {:.1} s", n.crash_at_s)),
    );
    row("  backlog at the kill", vigil.backlog_at_crash.to_string(), naive.map(|n| n.backlog_at_crash.to_string()));
    row(
        "  events lost in the crash",
        vigil.events_lost_in_crash.to_string(),
        naive.map(|n| n.events_lost_in_crash.to_string()),
    );
    row("  events recovered from disk", vigil.events_recovered.to_string(), naive.map(|_| "0".to_owned()));
    row(
        "  requests failed while down",
        vigil.requests_failed_in_crash.to_string(),
        naive.map(|n| n.requests_failed_in_crash.to_string()),
    );
}

/// A kill and restart, as it happened.
pub(crate) struct Crash {
    at: Duration,
    up: Duration,
    /// Vigil: the killed process's last report.
    killed: Option<ChildLine>,
    /// The naive design: events its killed incarnation held.
    naive_lost: Option<u64>,
}

impl Crash {
    /// When the kill came, in seconds since the start.
    pub(crate) fn at_s(&self) -> f64 {
        self.at.as_secs_f64()
    }

    /// The figures, once the run is over: `last` is Vigil's final report
    /// (`None` for the naive design), `spool` whether Vigil had one.
    pub(crate) fn figures(&self, requests: &Recorder, last: Option<&LedgerSnapshot>, spool: bool) -> CrashFigures {
        let samples = requests.samples();
        let answered_within = |from: Duration, to: Duration| {
            samples.iter().filter(|s| s.ok && (from..=to).contains(&answered_at(s))).count() as u64
        };
        let failed_around = samples
            .iter()
            .filter(|s| !s.ok && s.at + Duration::from_secs(1) >= self.at && s.at <= self.up + Duration::from_secs(1))
            .count() as u64;
        let ok = requests.ok.load(std::sync::atomic::Ordering::Relaxed);
        let (lost, recovered, backlog) = match (last, &self.killed) {
            (Some(last), killed) => {
                // Without a spool, what the killed process resolved is in its own last report only.
                let before = match (spool, killed) {
                    (false, Some(k)) => k.ledger.delivered + k.ledger.dropped.total(),
                    _ => 0,
                };
                let accounted = before + last.delivered + last.dropped.total() + last.pending;
                (ok.saturating_sub(accounted), last.recovered, killed.as_ref().map_or(0, |k| k.ledger.pending))
            }
            (None, _) => (self.naive_lost.unwrap_or(0), 0, self.naive_lost.unwrap_or(0)),
        };
        CrashFigures {
            crash_at_s: round2(self.at.as_secs_f64()),
            crash_downtime_s: round2(self.up.saturating_sub(self.at).as_secs_f64()),
            spool: last.map(|_| spool),
            backlog_at_crash: backlog,
            events_lost_in_crash: lost,
            events_recovered: recovered,
            requests_failed_in_crash: failed_around,
            crash_window_events: answered_within(self.at.saturating_sub(WRITER_WINDOW), self.at),
        }
    }
}

fn answered_at(s: &Sample) -> Duration {
    s.at + s.latency
}

/// The HTTPS sink's figures the report shows, from the sink's stats in this
/// process or the child's last report.
pub(crate) struct HttpsFigures {
    pub(crate) tls_failures: u64,
    pub(crate) cert_rotations: u64,
    pub(crate) server_certificate: Option<String>,
    pub(crate) last_error: Option<String>,
}

impl HttpsFigures {
    pub(crate) fn of(stats: Option<HttpsStatsSnapshot>, child: Option<&ChildLine>) -> Option<HttpsFigures> {
        match (stats, child) {
            (Some(h), _) => Some(HttpsFigures {
                tls_failures: h.tls_failures,
                cert_rotations: h.certificate_changes,
                server_certificate: h.server_certificate.map(|c| format!("{} (issuer {})", c.subject, c.issuer)),
                last_error: h.last_error,
            }),
            (None, Some(c)) => Some(HttpsFigures {
                tls_failures: c.tls_failures,
                cert_rotations: c.cert_rotations,
                server_certificate: c.server_certificate.clone(),
                last_error: c.last_error.clone(),
            }),
            (None, None) => None,
        }
    }
}

/// One report of the child: a line of JSON on its stdout.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ChildLine {
    pub(crate) ledger: LedgerSnapshot,
    /// Restart lines (path, reason) since the previous report.
    pub(crate) restarts: Vec<(String, String)>,
    pub(crate) tls_failures: u64,
    pub(crate) cert_rotations: u64,
    pub(crate) server_certificate: Option<String>,
    pub(crate) last_error: Option<String>,
    pub(crate) abandoned_threads: usize,
    /// The last report, after the orderly end.
    pub(crate) last: bool,
}

impl ChildLine {
    fn now(events: &EventsHandle, https: &HttpsStats, restarts: Vec<(String, String)>) -> ChildLine {
        let https = HttpsFigures::of(Some(https.snapshot()), None);
        let https = https.unwrap_or(HttpsFigures {
            tls_failures: 0,
            cert_rotations: 0,
            server_certificate: None,
            last_error: None,
        });
        ChildLine {
            ledger: events.ledger(),
            restarts,
            tls_failures: https.tls_failures,
            cert_rotations: https.cert_rotations,
            server_certificate: https.server_certificate,
            last_error: https.last_error,
            abandoned_threads: 0,
            last: false,
        }
    }
}

/// The child process (`--vigil-child`): Vigil's service, reporting on stdout
/// until its stdin closes, then the orderly end. Killed with SIGKILL, it
/// leaves only what it wrote to its spool.
pub(crate) fn child_main(mut argv: impl Iterator<Item = String>) -> ExitCode {
    let mut config = ServiceConfig::replay(String::new(), Vec::new(), Duration::from_millis(2));
    while let Some(flag) = argv.next() {
        match flag.as_str() {
            "--otlp" => config.otlp = true,
            flag => {
                let value = argv.next().unwrap_or_default();
                match flag {
                    "--port" => config.port = value.parse().unwrap_or(0),
                    "--endpoint" => config.endpoint = value,
                    "--trust" => config.trust_files.push(value.into()),
                    "--work-ms" => config.work = Duration::from_millis(value.parse().unwrap_or(2)),
                    "--spool" => config.spool = Some(value.into()),
                    "--announced" => {
                        config.announced = Some((value.into(), SystemTime::now() + Duration::from_secs(3 * 86_400)));
                    }
                    _ => {}
                }
            }
        }
    }
    let VigilService { system, events, https, .. } = match VigilService::start(config) {
        Ok(service) => service,
        Err(e) => {
            eprintln!("vigil child: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    let supervision = system.subscribe();
    let restarts = || {
        supervision
            .try_iter()
            .filter_map(|event| match event {
                SupervisionEvent::Restarting { path, reason, .. } => Some((path, reason.to_string())),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    // The parent closes stdin for the orderly end (or dies).
    let (closed, stdin_closed) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        let _ = closed.send(());
    });
    let report = |line: &ChildLine| -> bool {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, line).is_ok() && writeln!(out).is_ok() && out.flush().is_ok()
    };
    loop {
        if !report(&ChildLine::now(&events, &https, restarts())) {
            break;
        }
        match stdin_closed.recv_timeout(REPORT_EVERY) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    if let Err(e) = events.flush(Duration::from_secs(15)) {
        eprintln!("vigil child: final flush: {e}");
    }
    events.close();
    let abandoned_threads = match system.shutdown() {
        Ok(report) => report.abandoned_threads.len(),
        Err(e) => e.abandoned.len(),
    };
    let mut last = ChildLine::now(&events, &https, restarts());
    last.abandoned_threads = abandoned_threads;
    last.last = true;
    if report(&last) { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// How the parent starts the child.
pub(crate) struct ChildSettings {
    pub(crate) endpoint: String,
    pub(crate) trust: PathBuf,
    pub(crate) work: Duration,
    pub(crate) spool: Option<PathBuf>,
    pub(crate) announced: Option<PathBuf>,
    pub(crate) otlp: bool,
}

#[derive(Default)]
struct Reports {
    latest: Option<ChildLine>,
    /// Restart lines not yet taken by the scenario.
    restarts: Vec<(String, String)>,
}

/// The parent's side: the running child, its reports, and the kill.
pub(crate) struct VigilChild {
    pub(crate) port: u16,
    settings: ChildSettings,
    child: Child,
    stdin: Option<ChildStdin>,
    reports: Arc<Mutex<Reports>>,
    reader: Option<JoinHandle<()>>,
    /// TLS failures and rotations seen by the processes killed before.
    before: (u64, u64),
    /// Without a spool: events the killed processes accepted and delivered,
    /// which the next one's ledger does not know.
    forgotten: (u64, u64),
}

impl VigilChild {
    /// Starts the child and waits for its first report.
    pub(crate) fn start(settings: ChildSettings) -> Result<VigilChild, Box<dyn std::error::Error>> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let (child, stdin, reports, reader) = spawn(&settings, port)?;
        Ok(VigilChild {
            port,
            settings,
            child,
            stdin,
            reports,
            reader: Some(reader),
            before: (0, 0),
            forgotten: (0, 0),
        })
    }

    /// The ledger in the child's latest report; without a spool, with the
    /// killed processes' events added, so that the timeline shows what the
    /// crash lost as emitted and never delivered.
    pub(crate) fn ledger(&self) -> Option<LedgerSnapshot> {
        let mut ledger = self.reports.lock().latest.as_ref().map(|l| l.ledger.clone())?;
        ledger.accepted += self.forgotten.0;
        ledger.delivered += self.forgotten.1;
        Some(ledger)
    }

    /// Reads the delivered count of the child's latest report, from any
    /// thread, as long as this process runs.
    pub(crate) fn delivered(&self) -> impl Fn() -> u64 + Send + 'static {
        let reports = Arc::clone(&self.reports);
        move || reports.lock().latest.as_ref().map_or(0, |l| l.ledger.delivered)
    }

    /// Restart lines reported since the last call.
    pub(crate) fn take_restarts(&self) -> Vec<(String, String)> {
        std::mem::take(&mut self.reports.lock().restarts)
    }

    /// SIGKILL, the process manager's pause, a new process on the same port
    /// and spool; returns when it serves.
    pub(crate) fn crash(&mut self, epoch: Instant) -> Result<Crash, Box<dyn std::error::Error>> {
        let at = epoch.elapsed();
        self.child.kill()?;
        self.child.wait()?;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let killed = self.reports.lock().latest.take();
        if let Some(k) = &killed {
            self.before = (self.before.0 + k.tls_failures, self.before.1 + k.cert_rotations);
            if self.settings.spool.is_none() {
                self.forgotten = (self.forgotten.0 + k.ledger.accepted, self.forgotten.1 + k.ledger.delivered);
            }
        }
        // RestartSec: a process manager's pause, not a wait for a condition.
        std::thread::sleep(RESTART_SEC);
        let (child, stdin, reports, reader) = spawn(&self.settings, self.port)?;
        // Restart lines of the killed process not yet taken stay with the new reports.
        reports.lock().restarts.extend(self.take_restarts());
        (self.child, self.stdin, self.reports, self.reader) = (child, stdin, reports, Some(reader));
        Ok(Crash { at, up: epoch.elapsed(), killed, naive_lost: None })
    }

    /// The orderly end: stdin closed, the child flushes and shuts down;
    /// its last report (killed after 60 s if it never ends).
    pub(crate) fn stop(mut self) -> Option<ChildLine> {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(60);
        while matches!(self.child.try_wait(), Ok(None)) {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let mut reports = self.reports.lock();
        let mut last = reports.latest.take()?;
        // Every restart line not taken yet, the last report's included.
        last.restarts = std::mem::take(&mut reports.restarts);
        // The HTTPS figures over every process, the killed ones' included.
        last.tls_failures += self.before.0;
        last.cert_rotations += self.before.1;
        Some(last)
    }
}

type Spawned = (Child, Option<ChildStdin>, Arc<Mutex<Reports>>, JoinHandle<()>);

fn spawn(settings: &ChildSettings, port: u16) -> Result<Spawned, Box<dyn std::error::Error>> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["--vigil-child", "--port", &port.to_string(), "--endpoint", &settings.endpoint])
        .arg("--trust")
        .arg(&settings.trust)
        .args(["--work-ms", &settings.work.as_millis().to_string()]);
    if let Some(dir) = &settings.spool {
        command.arg("--spool").arg(dir);
    }
    if let Some(pem) = &settings.announced {
        command.arg("--announced").arg(pem);
    }
    if settings.otlp {
        command.arg("--otlp");
    }
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
    let stdout = child.stdout.take().ok_or("the child has no stdout")?;
    let reports = Arc::new(Mutex::new(Reports::default()));
    let (first, got_first) = mpsc::channel();
    let reader = {
        let reports = Arc::clone(&reports);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Ok(report) = serde_json::from_str::<ChildLine>(&line) else { continue };
                let mut reports = reports.lock();
                reports.restarts.extend(report.restarts.iter().cloned());
                reports.latest = Some(report);
                let _ = first.send(());
            }
        })
    };
    // Recovery of a large spool takes a while; 30 s is far beyond it.
    if got_first.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        return Err("the Vigil child did not report within 30 s".into());
    }
    naive::wait_for_port(port);
    let stdin = child.stdin.take();
    Ok((child, stdin, reports, reader))
}

/// The naive design's kill: waits (up to 5 s) until an incarnation has
/// answered a request and is 150–190 ms old, its backlog near its height:
/// its first delivery attempt, 200 ms after its start, ends it in the
/// outage. Then kills it. Its loss: the requests it answered, less what
/// reached the collector meanwhile.
pub(crate) fn kill_naive(
    manager: &naive::Manager,
    epoch: Instant,
    requests: &Recorder,
    collector: Option<&Collector>,
) -> Crash {
    let unique = || collector.map_or(0, |c| c.stats().unique_events);
    let deadline = Instant::now() + Duration::from_secs(5);
    let (started, delivered_before) = loop {
        let started = *manager.started.lock();
        let delivered_before = unique();
        let age = epoch.elapsed().saturating_sub(started);
        let answered = requests.samples().iter().any(|s| s.ok && answered_at(s) >= started);
        let height = (Duration::from_millis(150)..Duration::from_millis(190)).contains(&age);
        if (answered && height) || Instant::now() >= deadline {
            break (started, delivered_before);
        }
        // Polling the recorder: a condition with the deadline above.
        std::thread::sleep(Duration::from_millis(5));
    };
    let at = epoch.elapsed();
    manager.kill();
    let answered =
        requests.samples().iter().filter(|s| s.ok && (started..=at).contains(&answered_at(s))).count() as u64;
    // What it sent before the kill may still be landing.
    std::thread::sleep(RESTART_SEC);
    let delivered = unique().saturating_sub(delivered_before);
    naive::wait_for_port(manager.port);
    Crash { at, up: epoch.elapsed(), killed: None, naive_lost: Some(answered.saturating_sub(delivered)) }
}
