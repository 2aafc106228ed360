//! The monitor: a thread beside the tree (not in it, so that it can still
//! report the tree's end) that turns events and snapshots into a
//! [`HealthReport`] on a [watch](crate::watch).

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde::Serialize;
use vigil_core::{ExitReason, SupervisionEvent, SupervisorStats, SystemObserver};

use crate::error::HealthError;
use crate::model::{Assessor, Health, HealthConfig, Observation, Phase};
use crate::watch::{Publisher, Watch, watch};

/// Restarts of one child for one class of reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RestartCount {
    /// The child's path.
    pub path: String,
    /// The class of the exit that caused them: the [`ExitReason`]'s `kind`
    /// (`"panicked"`, `"failed"`, `"hung"` ...), or `"unknown"` for restarts
    /// whose event this monitor missed (it subscribed late, or lagged).
    pub reason: String,
    /// How many.
    pub count: u64,
}

/// One HTTPS endpoint's figures (feature `https`).
#[cfg(feature = "https")]
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct HttpsFigures {
    /// The sink's counters.
    pub stats: vigil_https::HttpsStatsSnapshot,
    /// Its certificates and announced rotations.
    pub readiness: vigil_https::Readiness,
}

/// What the monitor publishes: the [`Health`], the probes' answers, and the
/// figures `/stats`, `/metrics` and the systemd `STATUS=` line are made
/// from. Cheap to clone (the snapshots are shared). It may gain fields: read
/// them by name.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// The health.
    pub health: Health,
    /// Whether the process should be left running: false only when the
    /// root gave up, or a significant child's thread is hung.
    pub live: bool,
    /// Whether it should get traffic: [`Health::Ready`], or
    /// [`Health::Degraded`] unless [`HealthConfig::ready_when_degraded`] is
    /// off.
    pub ready: bool,
    /// Whether the ordered start has completed.
    pub started: bool,
    /// Restarts in the window, tree-wide.
    pub restarts_in_window: u64,
    /// Children running, and children in all, tree-wide.
    pub running: usize,
    /// All children, tree-wide.
    pub children: usize,
    /// Restarts by child and class of reason, since the monitor started.
    pub restarts: Vec<RestartCount>,
    /// Supervision events this monitor missed because it fell behind.
    pub events_missed: u64,
    /// The tree's last snapshot; `None` before the monitor's first look.
    #[serde(serialize_with = "shared")]
    pub tree: Option<Arc<SupervisorStats>>,
    /// The event pipeline's ledger (feature `events`), when one is watched.
    #[cfg(feature = "events")]
    pub events: Option<vigil_events::LedgerSnapshot>,
    /// The HTTPS endpoints' figures (feature `https`).
    #[cfg(feature = "https")]
    pub https: Vec<HttpsFigures>,
    /// Grows while a shutdown makes progress (children stopped, events
    /// settled): what `EXTEND_TIMEOUT_USEC` is sent for.
    pub progress: u64,
}

impl HealthReport {
    /// The report before the monitor's first look: [`Health::Starting`],
    /// live, not ready.
    ///
    /// # Examples
    ///
    /// ```
    /// let report = vigil_health::HealthReport::starting();
    /// assert!(report.live && !report.ready && !report.started);
    /// ```
    pub fn starting() -> HealthReport {
        HealthReport {
            health: Health::Starting,
            live: true,
            ready: false,
            started: false,
            restarts_in_window: 0,
            running: 0,
            children: 0,
            restarts: Vec::new(),
            events_missed: 0,
            tree: None,
            #[cfg(feature = "events")]
            events: None,
            #[cfg(feature = "https")]
            https: Vec::new(),
            progress: 0,
        }
    }

    /// The one-line summary systemd shows as `STATUS=`: the health (with
    /// "(not live)" when not live), children running, restarts in the window, events pending.
    ///
    /// # Examples
    ///
    /// ```
    /// let line = vigil_health::HealthReport::starting().status_line();
    /// assert!(line.starts_with("starting"));
    /// ```
    pub fn status_line(&self) -> String {
        #[allow(unused_mut)]
        let mut line = format!(
            "{}{}; {}/{} children running; {} restarts in the window",
            self.health.name(),
            if self.live { "" } else { " (not live)" },
            self.running,
            self.children,
            self.restarts_in_window
        );
        #[cfg(feature = "events")]
        if let Some(ledger) = &self.events {
            line.push_str(&format!("; {} events pending", ledger.pending));
        }
        line
    }
}

/// A watch channel of [`HealthReport`]s, starting at
/// [`HealthReport::starting`]. Make it before the tree starts, hand the
/// [`Watch`] to the endpoint, and the [`Publisher`] to
/// [`HealthMonitorBuilder::publisher`] once the tree has started.
///
/// # Examples
///
/// ```
/// let (_publisher, watch) = vigil_health::report_channel();
/// assert_eq!(watch.get().health, vigil_health::Health::Starting);
/// ```
pub fn report_channel() -> (Publisher<HealthReport>, Watch<HealthReport>) {
    watch(HealthReport::starting())
}

/// Builds a [`HealthMonitor`]; see [`HealthMonitor::builder`].
#[must_use]
pub struct HealthMonitorBuilder {
    observer: SystemObserver,
    config: HealthConfig,
    publisher: Option<Publisher<HealthReport>>,
    #[cfg(feature = "events")]
    events: Option<vigil_events::EventsHandle>,
    #[cfg(feature = "https")]
    https: Vec<vigil_https::HttpsStats>,
}

impl fmt::Debug for HealthMonitorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthMonitorBuilder").field("observer", &self.observer).field("config", &self.config).finish()
    }
}

impl HealthMonitorBuilder {
    /// The thresholds. Defaults to [`HealthConfig::default`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// use vigil_health::{HealthConfig, HealthMonitor};
    /// let system = Supervisor::builder().child(ChildSpec::worker("w", || W)).start()?;
    /// let monitor = HealthMonitor::builder(system.observer()).config(HealthConfig::new().restart_threshold(1)).start()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn config(mut self, config: HealthConfig) -> HealthMonitorBuilder {
        self.config = config;
        self
    }

    /// Publishes on this channel (made with [`report_channel`] before the
    /// tree started, so that an endpoint in the tree could watch it from its
    /// start). Defaults to a new channel.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// use std::time::Duration;
    /// let (publisher, mut watch) = vigil_health::report_channel();
    /// let system = Supervisor::builder().child(ChildSpec::worker("w", || W)).start()?;
    /// let _monitor = vigil_health::HealthMonitor::builder(system.observer()).publisher(publisher).start()?;
    /// while watch.get().health == vigil_health::Health::Starting {
    ///     assert!(watch.changed(Duration::from_secs(60)));
    /// }
    /// assert!(watch.get().ready);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn publisher(mut self, publisher: Publisher<HealthReport>) -> HealthMonitorBuilder {
        self.publisher = Some(publisher);
        self
    }

    /// Watches this event pipeline: its ledger goes into the report, and
    /// events pending with no delivery for longer than
    /// [`HealthConfig::outage_after`] degrade the health. Feature `events`.
    /// Defaults to none.
    #[cfg(feature = "events")]
    pub fn events(mut self, handle: vigil_events::EventsHandle) -> HealthMonitorBuilder {
        self.events = Some(handle);
        self
    }

    /// Watches this HTTPS sink (repeat for several): its counters and
    /// certificates go into the report, and an announced rotation it is not
    /// ready for degrades the health. Feature `https`. Defaults to none.
    #[cfg(feature = "https")]
    pub fn https(mut self, stats: vigil_https::HttpsStats) -> HealthMonitorBuilder {
        self.https.push(stats);
        self
    }

    /// Subscribes to the tree and starts the monitor's thread; the first
    /// report is published before this returns.
    ///
    /// # Errors
    ///
    /// [`HealthError::InvalidConfig`] for refused settings;
    /// [`HealthError::Spawn`] when the thread cannot be spawned.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let system = Supervisor::builder().child(ChildSpec::worker("w", || W)).start()?;
    /// let monitor = vigil_health::HealthMonitor::builder(system.observer()).start()?;
    /// assert_eq!(monitor.watch().get().health, vigil_health::Health::Ready);
    /// system.shutdown()?;
    /// assert_eq!(monitor.stop().health, vigil_health::Health::Stopped);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start(self) -> Result<HealthMonitor, HealthError> {
        self.config.validate()?;
        let publisher = self.publisher.unwrap_or_else(|| report_channel().0);
        let watch = publisher.subscribe();
        let mut state = State {
            events: self.observer.subscribe(),
            observer: self.observer,
            interval: self.config.interval,
            assessor: Assessor::new(self.config),
            by_reason: BTreeMap::new(),
            missed: 0,
            root_gave_up: false,
            #[cfg(feature = "events")]
            pipeline: self.events,
            #[cfg(feature = "https")]
            https: self.https,
        };
        // The first look is on the caller's thread; a panic in it must not
        // unwind into the caller (the thread's loop looks again).
        if let Ok(report) = catch_unwind(AssertUnwindSafe(|| state.look())) {
            publisher.publish(report);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("vigil:health".to_owned())
            .spawn(move || state.run(&publisher, &flag))
            .map_err(HealthError::Spawn)?;
        Ok(HealthMonitor { stop, thread: Some(thread), watch })
    }
}

/// Watches a running tree and publishes a [`HealthReport`] on every change
/// it sees (an event wakes it; otherwise it looks every
/// [`HealthConfig::interval`]). It runs on its own thread beside the tree,
/// not in it, so that it can still report the tree's end: after
/// [`Health::Stopped`] or [`Health::Failed`] it publishes once more and ends.
///
/// Dropping it stops the thread (waiting at most one interval).
pub struct HealthMonitor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    watch: Watch<HealthReport>,
}

impl fmt::Debug for HealthMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthMonitor").field("health", &self.watch.get().health).finish()
    }
}

impl HealthMonitor {
    /// A builder for a monitor of the tree `observer` shows
    /// ([`System::observer`](vigil_core::System::observer)).
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let system = Supervisor::builder().child(ChildSpec::worker("w", || W)).start()?;
    /// let monitor = vigil_health::HealthMonitor::builder(system.observer()).start()?;
    /// assert!(monitor.watch().get().live);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(observer: SystemObserver) -> HealthMonitorBuilder {
        HealthMonitorBuilder {
            observer,
            config: HealthConfig::default(),
            publisher: None,
            #[cfg(feature = "events")]
            events: None,
            #[cfg(feature = "https")]
            https: Vec::new(),
        }
    }

    /// A watcher of the reports.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let system = Supervisor::builder().child(ChildSpec::worker("w", || W)).start()?;
    /// let monitor = vigil_health::HealthMonitor::builder(system.observer()).start()?;
    /// assert_eq!(monitor.watch().get().running, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn watch(&self) -> Watch<HealthReport> {
        self.watch.clone()
    }

    /// Takes a last look, stops the thread and returns the last report.
    /// After the tree has ended, that report is [`Health::Stopped`] or
    /// [`Health::Failed`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let system = Supervisor::builder().child(ChildSpec::worker("w", || W)).start()?;
    /// let monitor = vigil_health::HealthMonitor::builder(system.observer()).start()?;
    /// drop(system); // shuts the tree down in order
    /// assert_eq!(monitor.stop().health, vigil_health::Health::Stopped);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stop(mut self) -> HealthReport {
        self.halt();
        self.watch.get()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for HealthMonitor {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The monitor thread's state.
struct State {
    observer: SystemObserver,
    events: Receiver<SupervisionEvent>,
    interval: Duration,
    assessor: Assessor,
    by_reason: BTreeMap<(String, &'static str), u64>,
    missed: u64,
    root_gave_up: bool,
    #[cfg(feature = "events")]
    pipeline: Option<vigil_events::EventsHandle>,
    #[cfg(feature = "https")]
    https: Vec<vigil_https::HttpsStats>,
}

impl State {
    fn run(&mut self, publisher: &Publisher<HealthReport>, stop: &AtomicBool) {
        loop {
            match self.events.recv_timeout(self.interval) {
                Ok(event) => self.note(event),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
            while let Ok(event) = self.events.try_recv() {
                self.note(event);
            }
            // A panic in a figure source must not end the reports.
            let report = match catch_unwind(AssertUnwindSafe(|| self.look())) {
                Ok(report) => report,
                Err(_) => {
                    log::error!(target: "vigil", "the health monitor's look at the tree panicked; retrying");
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    continue;
                }
            };
            let ended = report.health.is_terminal();
            publisher.publish(report);
            if ended || stop.load(Ordering::Relaxed) {
                // One more look if stopped early, so the last report is fresh.
                if !ended && let Ok(report) = catch_unwind(AssertUnwindSafe(|| self.look())) {
                    publisher.publish(report);
                }
                return;
            }
        }
    }

    fn note(&mut self, event: SupervisionEvent) {
        match event {
            SupervisionEvent::Restarting { path, reason, .. } => {
                *self.by_reason.entry((path, reason_class(&reason))).or_default() += 1;
            }
            // The root gave up, or its own loop hung (the tree ends then).
            SupervisionEvent::GaveUp { path, .. } | SupervisionEvent::Hung { path, .. }
                if path == self.observer.root_path() =>
            {
                self.root_gave_up = true;
            }
            SupervisionEvent::Lagged { missed } => self.missed = self.missed.saturating_add(missed),
            _ => {}
        }
    }

    fn look(&mut self) -> HealthReport {
        let now = Instant::now();
        let running = self.observer.is_running();
        if !running {
            // A root that gives up publishes it before it stops running:
            // read what came since the last drain before deciding.
            while let Ok(event) = self.events.try_recv() {
                self.note(event);
            }
        }
        let phase = match (running, self.observer.shutdown_requested()) {
            _ if self.root_gave_up => Phase::Failed,
            (true, false) => Phase::Running,
            (true, true) => Phase::Stopping,
            // Ended without giving up: asked to, or its auto_shutdown (a
            // significant child ended), which OTP counts as a normal exit.
            (false, _) => Phase::Stopped,
        };
        let tree = Arc::new(self.observer.stats());
        #[cfg(feature = "events")]
        let ledger = self.pipeline.as_ref().map(vigil_events::EventsHandle::ledger);
        #[cfg(feature = "events")]
        let events = ledger.as_ref().map(|l| (l.pending, l.delivered));
        #[cfg(not(feature = "events"))]
        let events = None;
        #[cfg(feature = "https")]
        let https: Vec<HttpsFigures> =
            self.https.iter().map(|s| HttpsFigures { stats: s.snapshot(), readiness: s.readiness() }).collect();
        #[allow(unused_mut)]
        let mut rotations_not_ready = Vec::new();
        #[cfg(feature = "https")]
        for figures in &https {
            for rotation in figures.readiness.rotations.iter().filter(|r| !r.ready) {
                rotations_not_ready.push(format!(
                    "{}: new CA {} announced for {} is not in the trust set",
                    figures.readiness.endpoint, rotation.new_ca, rotation.by
                ));
            }
        }
        let a = self.assessor.assess(&Observation { now, phase, stats: &tree, events, rotations_not_ready });
        let restarts = self.restart_counts(&tree);
        #[allow(unused_mut)]
        let mut progress = (a.children - a.running) as u64;
        #[cfg(feature = "events")]
        if let Some(l) = &ledger {
            progress = progress.saturating_add(l.delivered).saturating_add(l.dropped.total());
        }
        HealthReport {
            health: a.health,
            live: a.live,
            ready: a.ready,
            started: true,
            restarts_in_window: a.restarts_in_window,
            running: a.running,
            children: a.children,
            restarts,
            events_missed: self.missed,
            tree: Some(tree),
            #[cfg(feature = "events")]
            events: ledger,
            #[cfg(feature = "https")]
            https,
            progress,
        }
    }

    /// Restarts by path and class from the events, with any the events did
    /// not explain (missed) as `"unknown"`, so each child's sum is its
    /// `restarts_total`.
    fn restart_counts(&self, tree: &SupervisorStats) -> Vec<RestartCount> {
        let mut out: Vec<RestartCount> = self
            .by_reason
            .iter()
            .map(|((path, reason), count)| RestartCount {
                path: path.clone(),
                reason: (*reason).to_owned(),
                count: *count,
            })
            .collect();
        let mut children = Vec::new();
        crate::model::collect(tree, &mut children);
        for child in children {
            let seen: u64 = out.iter().filter(|r| r.path == child.path).map(|r| r.count).sum();
            if child.restarts_total > seen {
                out.push(RestartCount {
                    path: child.path.clone(),
                    reason: "unknown".to_owned(),
                    count: child.restarts_total - seen,
                });
            }
        }
        out
    }
}

/// Serialises the shared snapshot as the snapshot itself.
fn shared<S: serde::Serializer>(tree: &Option<Arc<SupervisorStats>>, s: S) -> Result<S::Ok, S::Error> {
    tree.as_deref().serialize(s)
}

/// The class of an exit, as its JSON `kind` spells it.
fn reason_class(reason: &ExitReason) -> &'static str {
    match reason {
        ExitReason::Normal => "normal",
        ExitReason::Shutdown => "shutdown",
        ExitReason::Panicked { .. } => "panicked",
        ExitReason::Failed { .. } => "failed",
        ExitReason::StartTimeout { .. } => "start_timeout",
        ExitReason::Hung { .. } => "hung",
        ExitReason::AbandonedLimit { .. } => "abandoned_limit",
        ExitReason::HungSupervisor { .. } => "hung_supervisor",
        ExitReason::Spawn { .. } => "spawn",
        ExitReason::ChildStartFailed { .. } => "child_start_failed",
        ExitReason::Escalated { .. } => "escalated",
        _ => "other",
    }
}
