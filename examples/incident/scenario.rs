//! One run of the script against one design: healthy, CA rotation, outage,
//! operator fix, recovery, orderly end.

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use vigil::SupervisionEvent;
use vigil::events::LedgerSnapshot;
use vigil::https::{HttpsStatsSnapshot, Readiness};
use vigil_collector::Collector;

use crate::crash::{self, ChildSettings, CrashFigures, VigilChild};
use crate::load::{Load, Recorder};
use crate::naive;
use crate::report::{Markers, Phases, Point, secs};
use crate::service::{ServiceConfig, VigilService};
use crate::{Args, Status, TempDir};

/// Which design serves the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Design {
    /// Handlers and the batcher supervised by Vigil.
    Vigil,
    /// The incident's design, in a child process.
    Naive,
}

/// Which part of the story is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Healthy,
    Outage,
    Recovery,
    /// `--hang`: the collector reads requests and never answers.
    Hung,
    Draining,
    External,
}

impl Design {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Design::Vigil => "Vigil",
            Design::Naive => "naive",
        }
    }
}

impl Phase {
    /// The phase in at most 8 characters, for the live display.
    pub(crate) fn short(self) -> &'static str {
        match self {
            Phase::Healthy => "healthy",
            Phase::Outage => "OUTAGE",
            Phase::Recovery => "fixed",
            Phase::Hung => "HUNG",
            Phase::Draining => "draining",
            Phase::External => "external",
        }
    }
}

/// What one run measured.
pub(crate) struct Outcome {
    pub(crate) requests: Arc<Recorder>,
    pub(crate) timeline: Vec<Point>,
    pub(crate) markers: Markers,
    pub(crate) phases: Phases,
    pub(crate) restart_log: Vec<(f64, String, String)>,
    pub(crate) restarts: u64,
    /// `--hang`: hangs the watchdog detected, and abandoned threads still
    /// running when the tree shut down.
    pub(crate) hangs_detected: u64,
    pub(crate) abandoned_threads: usize,
    pub(crate) ledger: Option<LedgerSnapshot>,
    pub(crate) https: Option<HttpsStatsSnapshot>,
    pub(crate) readiness: Option<Readiness>,
    pub(crate) collector_unique_events: Option<u64>,
    pub(crate) duration_s: f64,
    pub(crate) health_transitions: Vec<crate::health::Transition>,
    /// `--crash`: what the kill cost, and (Vigil) the child's last report.
    pub(crate) crash: Option<CrashFigures>,
    pub(crate) child: Option<crash::ChildLine>,
}

/// The service under test.
enum Target {
    Vigil(Box<VigilService>),
    Naive(naive::Manager),
    /// `--crash`: Vigil's service in a child process, to be killed.
    Child(Box<VigilChild>),
}

impl Target {
    fn port(&self) -> u16 {
        match self {
            Target::Vigil(service) => service.port,
            Target::Naive(manager) => manager.port,
            Target::Child(child) => child.port,
        }
    }

    fn ledger(&self) -> Option<LedgerSnapshot> {
        match self {
            Target::Vigil(service) => Some(service.events.ledger()),
            Target::Naive(_) => None,
            Target::Child(child) => child.ledger(),
        }
    }

    /// `--crash`: kills the service process and restarts it.
    fn crash(
        &mut self,
        epoch: Instant,
        requests: &Recorder,
        collector: Option<&Collector>,
    ) -> Result<crash::Crash, Box<dyn Error>> {
        match self {
            Target::Child(child) => child.crash(epoch),
            Target::Naive(manager) => Ok(crash::kill_naive(manager, epoch, requests, collector)),
            Target::Vigil(_) => Err("--crash runs Vigil in a child process".into()),
        }
    }
}

pub(crate) fn run(args: &Args, design: Design, status: &Status) -> Result<Outcome, Box<dyn Error>> {
    let workdir = TempDir::new()?;
    let collector = match &args.endpoint {
        Some(_) => None,
        None => Some(Collector::builder().dir(workdir.path().join("collector")).start()?),
    };
    // The client's trust file: a copy of the collector's current CA, as an
    // operator would have installed it.
    let (endpoint, trust_files): (String, Vec<PathBuf>) = match (&collector, &args.endpoint) {
        (Some(collector), _) => {
            let trust = workdir.path().join("trust.pem");
            std::fs::copy(collector.ca_pem_path(), &trust)?;
            let endpoint = if args.otlp() { collector.otlp_endpoint() } else { collector.endpoint() };
            (endpoint, vec![trust])
        }
        (None, Some(endpoint)) => (endpoint.clone(), args.cas.clone()),
        (None, None) => return Err("no collector: give --endpoint with --ca".into()),
    };

    // The announcement: the collector's operator says which CA it will
    // rotate to, a few days ahead; the operator of this host configures it.
    // (Vigil only: the naive design has nowhere to put it.)
    let announced = match (&collector, design) {
        (Some(collector), Design::Vigil) => {
            Some((collector.announce_next_ca()?, SystemTime::now() + Duration::from_secs(3 * 86_400)))
        }
        _ => None,
    };
    let epoch = Instant::now();
    let mut markers = Markers::default();
    let mut phases = Phases::default();
    if announced.is_some() {
        markers.announced = Some(0.0);
        phases.announced_s = Some(0.0);
    }
    let mut config = ServiceConfig {
        announced: announced.clone(),
        otlp: args.otlp(),
        hang: args.hang,
        ..ServiceConfig::replay(endpoint.clone(), trust_files.clone(), args.work())
    };
    if args.hang.is_some() {
        // A batcher healthy for a second starts its backoff afresh: the
        // watchdog's replacement must not wait out the outage's long backoff.
        config.restart_backoff = config.restart_backoff.reset_after(Duration::from_secs(1));
    }
    let mut target = match design {
        Design::Vigil if args.crash => Target::Child(Box::new(VigilChild::start(ChildSettings {
            endpoint: endpoint.clone(),
            trust: trust_files[0].clone(),
            work: args.work(),
            spool: (!args.no_spool).then(|| workdir.path().join("spool")),
            announced: announced.as_ref().map(|(pem, _)| pem.clone()),
            otlp: args.otlp(),
        })?)),
        Design::Vigil => Target::Vigil(Box::new(VigilService::start(config)?)),
        Design::Naive => {
            // The naive design speaks NDJSON to /ingest, whatever Vigil uses.
            let naive_endpoint = collector.as_ref().map_or_else(|| endpoint.clone(), Collector::endpoint);
            Target::Naive(naive::Manager::start(&naive_endpoint, trust_files[0].clone(), args.work(), epoch)?)
        }
    };
    let health = match &target {
        Target::Vigil(service) => Some(crate::health::Health::attach(args.health.as_deref(), service, epoch)?),
        Target::Naive(_) | Target::Child(_) => None,
    };
    let supervision = match &target {
        Target::Vigil(service) => Some(service.system.subscribe()),
        Target::Naive(_) | Target::Child(_) => None,
    };
    let load =
        Load::start(format!("http://127.0.0.1:{}/charge", target.port()), args.rps, usize::from(args.clients), epoch);

    // The script: healthy for 25%, outage until the fix, recovery after.
    let (rotate_at, fix_at) = args.script();
    let mut phase = if collector.is_some() { Phase::Healthy } else { Phase::External };
    let mut readiness = None;
    let mut first_delivery = None;
    let mut timeline: Vec<Point> = Vec::new();
    let mut restart_log = Vec::new();
    let mut restarts = 0;
    let mut healthy_backlog = 0;
    let (mut hangs_detected, mut abandoned_threads) = (0, 0);
    let watch = |restart_log: &mut Vec<(f64, String, String)>,
                 markers: &mut Markers,
                 restarts: &mut u64,
                 child: Option<Vec<(String, String)>>| {
        let t = epoch.elapsed().as_secs_f64();
        let mut restarting = |path: String, reason: String| {
            if path.starts_with("root/events") {
                *restarts += 1;
                markers.restarts.push(t);
            }
            restart_log.push((t, path, reason));
        };
        for (path, reason) in child.into_iter().flatten() {
            restarting(path, reason);
        }
        for event in supervision.iter().flat_map(|s| s.try_iter()) {
            match event {
                SupervisionEvent::Restarting { path, reason, .. } => restarting(path, reason.to_string()),
                SupervisionEvent::Hung { .. } => markers.hangs.push(epoch.elapsed().as_secs_f64()),
                _ => {}
            }
        }
    };
    let child_restarts = |target: &Target| match target {
        Target::Child(child) => Some(child.take_restarts()),
        _ => None,
    };
    let mut crashed: Option<crash::Crash> = None;
    // `--hang` (Vigil only): when the collector stops answering, and again.
    let hang_window = args.hang_window().filter(|_| design == Design::Vigil);

    let tick = Duration::from_millis(250);
    let counted = collector.as_ref().filter(|_| design == Design::Naive);
    let mut previous = Snapshot::take(&target, &load.recorder, counted, 0.0);
    while epoch.elapsed() < args.duration && !health.as_ref().is_some_and(crate::health::Health::stop_requested) {
        let now = epoch.elapsed();
        if let Some(collector) = &collector {
            if phase == Phase::Healthy && now >= rotate_at {
                // What the operator would have seen before the outage.
                if let Target::Vigil(service) = &target {
                    let report = service.https.readiness();
                    if !report.ready {
                        markers.not_ready = Some(now.as_secs_f64());
                    }
                    readiness = Some(report);
                }
                collector.rotate_ca()?;
                phase = Phase::Outage;
                phases.rotation_s = Some(secs(now));
                markers.rotation = Some(now.as_secs_f64());
            } else if phase == Phase::Recovery
                && let Some((hang_at, _)) = hang_window
                && now >= hang_at
                && markers.hang.is_none()
            {
                collector.set_fault(vigil_collector::Fault::NeverAnswer);
                phase = Phase::Hung;
                markers.hang = Some((now.as_secs_f64(), None));
            } else if phase == Phase::Hung
                && let Some((_, answers_at)) = hang_window
                && now >= answers_at
            {
                collector.set_fault(vigil_collector::Fault::Healthy);
                phase = Phase::Recovery;
                if let Some((_, end)) = &mut markers.hang {
                    *end = Some(now.as_secs_f64());
                }
            } else if phase == Phase::Outage && now >= fix_at {
                // The operator fix: append the new CA to the client's trust file.
                let new_ca = std::fs::read(collector.ca_pem_path())?;
                let mut trust = std::fs::OpenOptions::new().append(true).open(&trust_files[0])?;
                trust.write_all(b"\n")?;
                trust.write_all(&new_ca)?;
                trust.sync_all()?;
                match &target {
                    Target::Vigil(service) => {
                        let events = service.events.clone();
                        first_delivery = Some(time_first_delivery(move || events.ledger().delivered, args.duration));
                    }
                    Target::Child(child) => {
                        first_delivery = Some(time_first_delivery(child.delivered(), args.duration))
                    }
                    Target::Naive(_) => {}
                }
                phase = Phase::Recovery;
                phases.fix_s = Some(secs(now));
                markers.fix = Some(now.as_secs_f64());
            }
        }
        if args.crash && phase == Phase::Outage && crashed.is_none() && now >= crash::crash_at(args) {
            let crash = target.crash(epoch, &load.recorder, collector.as_ref())?;
            markers.crash = Some(crash.at_s());
            crashed = Some(crash);
        }
        watch(&mut restart_log, &mut markers, &mut restarts, child_restarts(&target));
        // Pacing the sampler, not waiting for a condition.
        std::thread::sleep(tick.saturating_sub(epoch.elapsed().saturating_sub(now)));
        let t = epoch.elapsed().as_secs_f64();
        let snapshot = Snapshot::take(&target, &load.recorder, counted, t);
        let point = snapshot.rate_since(&previous);
        if phase == Phase::Healthy {
            healthy_backlog = healthy_backlog.max(snapshot.pending);
        }
        // Drained: the backlog is back to what steady delivery keeps in hand.
        if phase == Phase::Recovery && phases.drained_s.is_none() && snapshot.pending <= healthy_backlog.max(1) {
            phases.drained_s = Some(secs(epoch.elapsed()));
        }
        let shown = match &target {
            Target::Naive(manager) => manager.crashes.lock().len() as u64,
            Target::Vigil(_) | Target::Child(_) => restarts,
        };
        status.show(phase, &snapshot, shown);
        timeline.push(point);
        previous = snapshot;
    }

    // The end: stop the load, flush within a budget, shut down in order.
    let requests = load.stop();
    let stopped = Snapshot::take(&target, &requests, counted, epoch.elapsed().as_secs_f64());
    let shown = match &target {
        Target::Naive(manager) => manager.crashes.lock().len() as u64,
        Target::Vigil(_) | Target::Child(_) => restarts,
    };
    status.show(Phase::Draining, &stopped, shown);
    phases.load_end_s = secs(epoch.elapsed());
    let mut child = None;
    let (ledger, https) = match target {
        Target::Vigil(service) => {
            // After a signal the tree's own shutdown flushes, within the budget.
            if !health.as_ref().is_some_and(crate::health::Health::stop_requested)
                && let Err(e) = service.events.flush(Duration::from_secs(15))
            {
                log::warn!(target: "incident", "final flush: {e}");
            }
            watch(&mut restart_log, &mut markers, &mut restarts, None);
            service.events.close();
            hangs_detected = service.system.stats().hangs_total;
            match service.system.shutdown() {
                Ok(report) => abandoned_threads = report.abandoned_threads.len(),
                Err(e) => {
                    abandoned_threads = e.abandoned.len();
                    log::error!(target: "incident", "the tree gave up: {e}");
                }
            }
            (Some(service.events.ledger()), Some(service.https.snapshot()))
        }
        Target::Child(vigil) => {
            child = vigil.stop();
            watch(&mut restart_log, &mut markers, &mut restarts, child.as_ref().map(|c| c.restarts.clone()));
            abandoned_threads = child.as_ref().map_or(0, |c| c.abandoned_threads);
            (child.as_ref().map(|c| c.ledger.clone()), None)
        }
        Target::Naive(manager) => {
            // Give the naive batcher its chance to ship what it holds (it
            // sends every 200 ms) before the process is stopped.
            let answered = requests.ok.load(Ordering::Relaxed);
            if let Some(collector) = &collector {
                collector.wait_for(Duration::from_secs(1), |s| s.unique_events >= answered);
            }
            markers.naive_crashes = manager.stop().iter().map(Duration::as_secs_f64).collect();
            (None, None)
        }
    };
    // The row's final state: after the flush, or the naive design's last batch.
    let (t, ok, failed) = (epoch.elapsed().as_secs_f64(), requests.ok.load(Ordering::Relaxed), requests.total());
    let failed = failed - ok;
    let end = match &ledger {
        Some(l) => Snapshot { t, ok, failed, emitted: l.accepted, delivered: l.delivered, pending: l.pending },
        None => {
            let delivered = counted.map_or(0, |c| c.stats().unique_events);
            Snapshot { t, ok, failed, emitted: ok, delivered, pending: 0 }
        }
    };
    phases.first_delivery_after_fix_s =
        first_delivery.and_then(|t| t.join().ok().flatten()).map(|d: Duration| d.as_secs_f64());
    let shown_end = if design == Design::Naive { markers.naive_crashes.len() as u64 } else { restarts };
    status.show(Phase::Draining, &end, shown_end);
    status.finish();
    if phases.fix_s.is_some() && phases.drained_s.is_none() && ledger.as_ref().is_some_and(|l| l.pending == 0) {
        phases.drained_s = Some(secs(epoch.elapsed()));
    }
    let health_transitions = health.map(crate::health::Health::finish).unwrap_or_default();
    let crash = crashed.map(|c| c.figures(&requests, ledger.as_ref(), design == Design::Vigil && !args.no_spool));
    Ok(Outcome {
        health_transitions,
        requests,
        timeline,
        markers,
        phases,
        restart_log,
        restarts,
        hangs_detected,
        abandoned_threads,
        ledger,
        https,
        readiness,
        collector_unique_events: collector.as_ref().map(|c| c.stats().unique_events),
        duration_s: secs(epoch.elapsed()),
        crash,
        child,
    })
}

/// Measures, on a thread of its own, how long after now the ledger counts
/// its next delivery (`delivered` reads its count; at most `limit`): the
/// recovery time after the fix.
fn time_first_delivery(
    delivered: impl Fn() -> u64 + Send + 'static,
    limit: Duration,
) -> std::thread::JoinHandle<Option<Duration>> {
    let fixed = Instant::now();
    let before = delivered();
    std::thread::spawn(move || {
        while fixed.elapsed() < limit {
            if delivered() > before {
                return Some(fixed.elapsed());
            }
            // A measurement's resolution, not a wait for a condition with a deadline.
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    })
}

/// Counters at one instant, to turn into rates.
pub(crate) struct Snapshot {
    pub(crate) t: f64,
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    pub(crate) emitted: u64,
    pub(crate) delivered: u64,
    pub(crate) pending: u64,
}

impl Snapshot {
    /// The counters now. Vigil's events come from its ledger; the naive
    /// design keeps none, so its events are counted from the outside: one
    /// per answered request, delivered as the `collector` counts them.
    fn take(target: &Target, requests: &Recorder, collector: Option<&Collector>, t: f64) -> Snapshot {
        let ok = requests.ok.load(Ordering::Relaxed);
        let failed = requests.failed.load(Ordering::Relaxed);
        match (target.ledger(), collector) {
            (Some(ledger), _) => Snapshot {
                t,
                ok,
                failed,
                emitted: ledger.accepted,
                delivered: ledger.delivered,
                pending: ledger.pending,
            },
            (None, collector) => {
                let delivered = collector.map_or(0, |c| c.stats().unique_events);
                Snapshot { t, ok, failed, emitted: ok, delivered, pending: 0 }
            }
        }
    }

    fn rate_since(&self, before: &Snapshot) -> Point {
        let dt = (self.t - before.t).max(1e-3);
        let rate = |now: u64, then: u64| now.saturating_sub(then) as f64 / dt;
        Point {
            t: self.t,
            requests_per_s: rate(self.ok + self.failed, before.ok + before.failed),
            failed_per_s: rate(self.failed, before.failed),
            delivered_per_s: rate(self.delivered, before.delivered),
            undelivered: self.emitted.saturating_sub(self.delivered),
        }
    }
}
