//! The replay's tree told to the engines outside the process (vigil-health):
//! `--health ADDR` serves the probes, /stats and /metrics; with
//! `NOTIFY_SOCKET` set (under systemd, `Type=notify`) it sends READY=1,
//! STATUS=, WATCHDOG=1 and STOPPING=1; and every run records the health
//! transitions for `--json` (`health_transitions`).
//!
//! Under systemd or with `--health`, SIGTERM or SIGINT (what `systemctl
//! stop` and the kubelet send) ends the replay early, the normal way: the
//! load stops, then the tree shuts down in order (its event pipeline's own
//! final flush included), so no request is cut. A second signal exits at
//! once with 130.

use std::error::Error;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use signal_hook::consts::{SIGINT, SIGTERM};
use vigil_health::{
    HealthConfig, HealthEndpoint, HealthMonitor, HealthReport, NotifierHandle, SystemdNotifier, Watch, report_channel,
};

use crate::service::VigilService;

/// The health endpoint's shutdown timeout; it is in the shutdown budget
/// docs/deploy/vigil-incident.service derives.
const ENDPOINT_SHUTDOWN: Duration = Duration::from_secs(1);

/// One change of the health, as `--json` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Transition {
    /// Seconds since the run started.
    pub(crate) t_s: f64,
    /// `ready`, `degraded`, `stopping` ...
    pub(crate) health: String,
    pub(crate) live: bool,
    pub(crate) ready: bool,
    /// Why degraded, one line each, as first seen.
    pub(crate) reasons: Vec<String>,
    /// The reasons' kinds: a transition is a change of these, not of the
    /// figures in the lines.
    #[serde(skip)]
    kinds: Vec<&'static str>,
}

impl Transition {
    fn of(report: &HealthReport, epoch: Instant) -> Transition {
        let reasons = match &report.health {
            vigil_health::Health::Degraded { reasons } => reasons.as_slice(),
            _ => &[],
        };
        Transition {
            t_s: (epoch.elapsed().as_secs_f64() * 100.0).round() / 100.0,
            health: report.health.name().to_owned(),
            live: report.live,
            ready: report.ready,
            reasons: reasons.iter().map(ToString::to_string).collect(),
            kinds: reasons.iter().map(vigil_health::Reason::kind).collect(),
        }
    }

    /// The same state, whenever it was seen.
    fn same(&self, other: &Transition) -> bool {
        (&self.health, self.live, self.ready, &self.kinds) == (&other.health, other.live, other.ready, &other.kinds)
    }
}

/// The health side of a Vigil run.
pub(crate) struct Health {
    monitor: HealthMonitor,
    notifier: NotifierHandle,
    recorder: JoinHandle<Vec<Transition>>,
    signalled: Arc<AtomicBool>,
    epoch: Instant,
}

impl Health {
    /// Watches the started service: the endpoint (with `--health`), the
    /// systemd notifier (with `NOTIFY_SOCKET`), and the transitions.
    pub(crate) fn attach(
        health_addr: Option<&str>,
        service: &VigilService,
        epoch: Instant,
    ) -> Result<Health, Box<dyn Error>> {
        let (publisher, watch) = report_channel();
        let mut addr: Option<SocketAddr> = None;
        if let Some(wanted) = health_addr {
            let endpoint = HealthEndpoint::bind(wanted, watch.clone())?;
            addr = Some(endpoint.local_addr());
            log::info!(target: "incident", "health endpoint on http://{}", endpoint.local_addr());
            // Added last, so stopped first: the probes fail from the start
            // of the shutdown, which is what the orchestrators want.
            service.system.root().start_child(endpoint.child_spec().shutdown(ENDPOINT_SHUTDOWN))?;
        }
        // What docs/deploy/ derives TimeoutStopSec and
        // terminationGracePeriodSeconds from (tests/health/deploy.rs reads it).
        let budget = service.system.shutdown_budget();
        let total_ms = budget.total.map_or_else(|| "unbounded".to_owned(), |t| t.as_millis().to_string());
        log::info!(target: "incident", "shutdown budget {total_ms} ms: {budget}");
        let notifier = SystemdNotifier::from_env();
        let signalled = Arc::new(AtomicBool::new(false));
        if notifier.is_enabled() || addr.is_some() {
            for signal in [SIGTERM, SIGINT] {
                // The second signal exits at once; the first sets the flag.
                signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&signalled))?;
                signal_hook::flag::register(signal, Arc::clone(&signalled))?;
            }
        }
        // The replay's outage lasts seconds, not the default 30: show it.
        let config = HealthConfig::new().outage_after(Duration::from_secs(2));
        let monitor = HealthMonitor::builder(service.system.observer())
            .config(config)
            .publisher(publisher)
            .events(service.events.clone())
            .https(service.https.clone())
            .start()?;
        let notifier = notifier.start(monitor.watch())?;
        let recorder = record(monitor.watch(), epoch)?;
        Ok(Health { monitor, notifier, recorder, signalled, epoch })
    }

    /// Whether a signal asked the replay to stop: it ends early.
    pub(crate) fn stop_requested(&self) -> bool {
        self.signalled.load(Ordering::Relaxed)
    }

    /// After the tree's shutdown: the transitions, the last one `stopped`
    /// (or `failed`).
    pub(crate) fn finish(self) -> Vec<Transition> {
        let last = self.monitor.stop();
        self.notifier.join();
        let mut transitions = self.recorder.join().unwrap_or_default();
        let final_state = Transition::of(&last, self.epoch);
        if !transitions.last().is_some_and(|t| t.same(&final_state)) {
            transitions.push(final_state);
        }
        transitions
    }
}

/// Records each change of the health until the monitor ends.
fn record(mut watch: Watch<HealthReport>, epoch: Instant) -> std::io::Result<JoinHandle<Vec<Transition>>> {
    std::thread::Builder::new().name("incident:health".to_owned()).spawn(move || {
        let mut transitions: Vec<Transition> = Vec::new();
        loop {
            let now = Transition::of(&watch.get(), epoch);
            if !transitions.last().is_some_and(|t| t.same(&now)) {
                transitions.push(now);
            }
            if !watch.changed(Duration::from_secs(1)) && watch.is_closed() {
                return transitions;
            }
        }
    })
}
