//! The health model: [`Health`], its reasons, its settings, and the pure
//! state machine that derives it from what the tree shows (clock injected).

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use vigil_core::{ChildState, ChildStats, SupervisorStats};

use crate::error::HealthError;

/// How the tree is, as the engines outside the process need to know it.
/// Serialises to JSON with a `state` tag (`"ready"`, `"degraded"` ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Health {
    /// The ordered start has not finished.
    Starting,
    /// Started, no significant child down, nothing degraded.
    Ready,
    /// Running, with reasons to worry (one or more).
    Degraded {
        /// Why, one entry each.
        reasons: Vec<Reason>,
    },
    /// An orderly shutdown is under way.
    Stopping,
    /// The tree shut down in order: asked to, or by its `auto_shutdown`
    /// when a significant child ended.
    Stopped,
    /// The root gave up (its restart intensity was exceeded, or its own
    /// loop hung): the tree is gone.
    Failed,
}

impl Health {
    /// The state's name as the JSON tag and metrics label spell it.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(vigil_health::Health::Ready.name(), "ready");
    /// ```
    pub fn name(&self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Ready => "ready",
            Health::Degraded { .. } => "degraded",
            Health::Stopping => "stopping",
            Health::Stopped => "stopped",
            Health::Failed => "failed",
        }
    }

    /// Whether the tree has ended, for good: [`Stopped`](Health::Stopped)
    /// or [`Failed`](Health::Failed).
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_health::Health;
    /// assert!(Health::Failed.is_terminal());
    /// assert!(!Health::Stopping.is_terminal());
    /// ```
    pub fn is_terminal(&self) -> bool {
        matches!(self, Health::Stopped | Health::Failed)
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        if let Health::Degraded { reasons } = self {
            for (i, reason) in reasons.iter().enumerate() {
                f.write_str(if i == 0 { ": " } else { "; " })?;
                write!(f, "{reason}")?;
            }
        }
        Ok(())
    }
}

/// Why the tree is [degraded](Health::Degraded). Serialises with a `reason`
/// tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// More restarts in the window than the threshold
    /// ([`HealthConfig::restart_threshold`]).
    Restarts {
        /// Restarts in the window, tree-wide.
        restarts: u64,
        /// The window, in ms.
        #[serde(serialize_with = "as_millis", rename = "window_ms")]
        window: Duration,
    },
    /// A significant child is not running (it is restarting, or stopped).
    SignificantDown {
        /// The child's path.
        path: String,
    },
    /// A child's thread was declared hung by the watchdog and is still
    /// running (abandoned).
    Hung {
        /// The child's path.
        path: String,
    },
    /// The event pipeline has events pending and delivered none for longer
    /// than [`HealthConfig::outage_after`].
    EventsOutage {
        /// How long since the last delivery, in ms.
        #[serde(serialize_with = "as_millis", rename = "for_ms")]
        duration: Duration,
        /// Events waiting.
        pending: u64,
    },
    /// An HTTPS endpoint is not ready for a rotation announced for it: the
    /// new CA is not in the trust set yet.
    RotationNotReady {
        /// The endpoint (redacted) and the rotation, in words.
        detail: String,
    },
}

impl Reason {
    /// The reason's kind, as its JSON `reason` tag spells it: stays the
    /// same while its figures change.
    ///
    /// # Examples
    ///
    /// ```
    /// let hung = vigil_health::Reason::Hung { path: "root/db".into() };
    /// assert_eq!(hung.kind(), "hung");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::Restarts { .. } => "restarts",
            Reason::SignificantDown { .. } => "significant_down",
            Reason::Hung { .. } => "hung",
            Reason::EventsOutage { .. } => "events_outage",
            Reason::RotationNotReady { .. } => "rotation_not_ready",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Restarts { restarts, window } => {
                write!(f, "{restarts} restarts in the last {} s", window.as_secs())
            }
            Reason::SignificantDown { path } => write!(f, "significant child {path} is down"),
            Reason::Hung { path } => write!(f, "{path} is hung"),
            Reason::EventsOutage { duration, pending } => {
                write!(f, "event pipeline: no delivery for {} s, {pending} events pending", duration.as_secs())
            }
            Reason::RotationNotReady { detail } => write!(f, "not ready for an announced rotation: {detail}"),
        }
    }
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The thresholds of the health model. Setters say their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct HealthConfig {
    pub(crate) restart_threshold: u64,
    pub(crate) restart_window: Duration,
    pub(crate) outage_after: Duration,
    pub(crate) ready_when_degraded: bool,
    pub(crate) interval: Duration,
}

impl Default for HealthConfig {
    fn default() -> HealthConfig {
        HealthConfig {
            restart_threshold: 5,
            restart_window: Duration::from_secs(60),
            outage_after: Duration::from_secs(30),
            ready_when_degraded: true,
            interval: Duration::from_millis(250),
        }
    }
}

impl HealthConfig {
    /// The default settings.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = vigil_health::HealthConfig::new().restart_threshold(3).restart_window(Duration::from_secs(30));
    /// assert!(config.validate().is_ok());
    /// ```
    pub fn new() -> HealthConfig {
        HealthConfig::default()
    }

    /// More restarts than this in the window (tree-wide) degrade the health.
    /// Defaults to 5.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = vigil_health::HealthConfig::new().restart_threshold(0); // any restart degrades
    /// assert!(config.validate().is_ok());
    /// ```
    pub fn restart_threshold(mut self, restarts: u64) -> HealthConfig {
        self.restart_threshold = restarts;
        self
    }

    /// The window restarts are counted in (the `STATUS=` line's "restarts
    /// in the last …" too). Defaults to 60 s; must not be zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = vigil_health::HealthConfig::new().restart_window(Duration::ZERO);
    /// assert!(config.validate().is_err());
    /// ```
    pub fn restart_window(mut self, window: Duration) -> HealthConfig {
        self.restart_window = window;
        self
    }

    /// Events pending with no delivery for longer than this degrade the
    /// health (feature `events`). Defaults to 30 s.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// assert!(vigil_health::HealthConfig::new().outage_after(Duration::from_secs(5)).validate().is_ok());
    /// ```
    pub fn outage_after(mut self, after: Duration) -> HealthConfig {
        self.outage_after = after;
        self
    }

    /// Whether `/readyz` answers 200 while [degraded](Health::Degraded).
    /// Defaults to true: a degraded service still serves (the incident's
    /// requests all succeed through the event outage), and taking every
    /// replica out of the load balancer at once for a shared outage would
    /// turn a degraded pipeline into a full outage.
    ///
    /// # Examples
    ///
    /// ```
    /// let strict = vigil_health::HealthConfig::new().ready_when_degraded(false);
    /// assert!(strict.validate().is_ok());
    /// ```
    pub fn ready_when_degraded(mut self, ready: bool) -> HealthConfig {
        self.ready_when_degraded = ready;
        self
    }

    /// How often the monitor looks at the tree when no event wakes it.
    /// Defaults to 250 ms; must be between 1 ms and 60 s.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// assert!(vigil_health::HealthConfig::new().interval(Duration::ZERO).validate().is_err());
    /// ```
    pub fn interval(mut self, interval: Duration) -> HealthConfig {
        self.interval = interval;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`HealthError::InvalidConfig`] naming the setting: a zero restart
    /// window, or an interval outside 1 ms ..= 60 s.
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_health::{HealthConfig, HealthError};
    /// let error = HealthConfig::new().interval(std::time::Duration::ZERO).validate().unwrap_err();
    /// assert!(matches!(error, HealthError::InvalidConfig { setting: "interval", .. }));
    /// ```
    pub fn validate(&self) -> Result<(), HealthError> {
        if self.restart_window.is_zero() {
            return Err(HealthError::InvalidConfig { setting: "restart_window", why: "must not be zero" });
        }
        if self.interval < Duration::from_millis(1) || self.interval > Duration::from_secs(60) {
            return Err(HealthError::InvalidConfig { setting: "interval", why: "must be between 1 ms and 60 s" });
        }
        Ok(())
    }
}

/// Where the tree is in its life, as the monitor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Running,
    Stopping,
    Stopped,
    Failed,
}

/// One look at the tree and its pipeline: the assessor's input.
#[derive(Debug)]
pub(crate) struct Observation<'a> {
    pub(crate) now: Instant,
    pub(crate) phase: Phase,
    pub(crate) stats: &'a SupervisorStats,
    /// The event pipeline's `(pending, delivered)`, when there is one.
    pub(crate) events: Option<(u64, u64)>,
    /// Announced rotations an endpoint is not ready for, in words.
    pub(crate) rotations_not_ready: Vec<String>,
}

/// The assessor's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assessment {
    pub(crate) health: Health,
    pub(crate) live: bool,
    pub(crate) ready: bool,
    pub(crate) restarts_in_window: u64,
    pub(crate) running: usize,
    pub(crate) children: usize,
}

/// The pure state machine: remembers restart totals over the window and the
/// pipeline's last delivery; everything else is read from the observation.
#[derive(Debug)]
pub(crate) struct Assessor {
    config: HealthConfig,
    /// `(when, tree-wide restarts so far)`, oldest first.
    samples: VecDeque<(Instant, u64)>,
    /// The pipeline's delivered count and when it last changed (or when it
    /// was first seen).
    delivered: Option<(u64, Instant)>,
}

impl Assessor {
    pub(crate) fn new(config: HealthConfig) -> Assessor {
        Assessor { config, samples: VecDeque::new(), delivered: None }
    }

    pub(crate) fn assess(&mut self, o: &Observation<'_>) -> Assessment {
        let mut children = Vec::new();
        collect(o.stats, &mut children);
        let total: u64 = children.iter().map(|c| c.restarts_total).sum();
        let restarts_in_window = self.restarts_in_window(o.now, total);
        let running = children.iter().filter(|c| c.state == ChildState::Running).count();

        let mut reasons = Vec::new();
        if restarts_in_window > self.config.restart_threshold {
            reasons.push(Reason::Restarts { restarts: restarts_in_window, window: self.config.restart_window });
        }
        for child in children.iter().filter(|c| c.significant && c.state != ChildState::Running) {
            reasons.push(Reason::SignificantDown { path: child.path.clone() });
        }
        let mut significant_hung = false;
        for thread in o.stats.abandoned_threads.iter().filter(|t| t.hung) {
            if !reasons.iter().any(|r| matches!(r, Reason::Hung { path } if *path == thread.path)) {
                reasons.push(Reason::Hung { path: thread.path.clone() });
            }
            significant_hung |= children.iter().any(|c| c.path == thread.path && c.significant);
        }
        if let Some((pending, delivered)) = o.events {
            let since = match self.delivered {
                Some((seen, since)) if seen == delivered => since,
                _ => o.now,
            };
            self.delivered = Some((delivered, since));
            let quiet = o.now.saturating_duration_since(since);
            if pending > 0 && quiet > self.config.outage_after {
                reasons.push(Reason::EventsOutage { duration: quiet, pending });
            }
        }
        for detail in &o.rotations_not_ready {
            reasons.push(Reason::RotationNotReady { detail: detail.clone() });
        }

        let health = match o.phase {
            Phase::Failed => Health::Failed,
            Phase::Stopped => Health::Stopped,
            Phase::Stopping => Health::Stopping,
            Phase::Running if reasons.is_empty() => Health::Ready,
            Phase::Running => Health::Degraded { reasons },
        };
        let live = o.phase != Phase::Failed && !significant_hung;
        let ready = match &health {
            Health::Ready => true,
            Health::Degraded { .. } => self.config.ready_when_degraded,
            _ => false,
        };
        Assessment { health, live, ready, restarts_in_window, running, children: children.len() }
    }

    /// Restarts since the newest sample at least one window old (or the
    /// first sample, while the monitor is younger than the window).
    fn restarts_in_window(&mut self, now: Instant, total: u64) -> u64 {
        self.samples.push_back((now, total));
        let window = self.config.restart_window;
        while self.samples.len() > 1 && now.saturating_duration_since(self.samples[1].0) >= window {
            self.samples.pop_front();
        }
        let base = self.samples.front().map_or(total, |s| s.1);
        // A restarted supervisor's counters start again: never negative.
        total.saturating_sub(base)
    }
}

/// Every child in the tree, depth first.
pub(crate) fn collect<'a>(stats: &'a SupervisorStats, out: &mut Vec<&'a ChildStats>) {
    for child in &stats.children {
        out.push(child);
        if let Some(sup) = &child.supervisor {
            collect(sup, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::{Actor, BoxError, ChildSpec, Context, Supervisor};

    struct Idle;
    impl Actor for Idle {
        type Msg = ();
        fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> {
            Ok(())
        }
    }

    /// A real tree's snapshot, edited: `SupervisorStats` is non-exhaustive.
    fn snapshot() -> SupervisorStats {
        let system = Supervisor::builder()
            .auto_shutdown(vigil_core::AutoShutdown::AnySignificant)
            .child(ChildSpec::worker("main", || Idle).significant(true).restart(vigil_core::Restart::Transient))
            .child(ChildSpec::worker("side", || Idle))
            .start()
            .unwrap();
        let stats = system.stats();
        system.shutdown().unwrap();
        stats
    }

    fn observe(stats: &SupervisorStats, now: Instant, phase: Phase) -> Observation<'_> {
        Observation { now, phase, stats, events: None, rotations_not_ready: Vec::new() }
    }

    #[test]
    fn a_running_tree_with_nothing_wrong_is_ready() {
        let stats = snapshot();
        let mut assessor = Assessor::new(HealthConfig::new());
        let a = assessor.assess(&observe(&stats, Instant::now(), Phase::Running));
        assert_eq!(a.health, Health::Ready);
        assert!(a.live && a.ready);
        assert_eq!((a.running, a.children), (2, 2));
    }

    #[test]
    fn restarts_above_the_threshold_degrade_until_they_leave_the_window() {
        let mut stats = snapshot();
        let config = HealthConfig::new().restart_threshold(2).restart_window(Duration::from_secs(10));
        let mut assessor = Assessor::new(config);
        let t0 = Instant::now();
        assert_eq!(assessor.assess(&observe(&stats, t0, Phase::Running)).health, Health::Ready);
        stats.children[1].restarts_total = 3;
        let a = assessor.assess(&observe(&stats, t0 + Duration::from_secs(1), Phase::Running));
        let restarts = Reason::Restarts { restarts: 3, window: Duration::from_secs(10) };
        assert_eq!(a.health, Health::Degraded { reasons: vec![restarts] });
        assert!(a.ready, "ready while degraded by default");
        // Ten seconds after the restarts, the window holds none of them.
        let a = assessor.assess(&observe(&stats, t0 + Duration::from_secs(12), Phase::Running));
        assert_eq!((a.health, a.restarts_in_window), (Health::Ready, 0));
    }

    #[test]
    fn a_significant_child_down_degrades_and_strict_readiness_refuses() {
        let mut stats = snapshot();
        stats.children[0].state = ChildState::Restarting;
        let mut assessor = Assessor::new(HealthConfig::new().ready_when_degraded(false));
        let a = assessor.assess(&observe(&stats, Instant::now(), Phase::Running));
        assert_eq!(a.health, Health::Degraded { reasons: vec![Reason::SignificantDown { path: "root/main".into() }] });
        assert!(a.live);
        assert!(!a.ready);
    }

    #[test]
    fn an_outage_counts_from_the_last_delivery() {
        let stats = snapshot();
        let mut assessor = Assessor::new(HealthConfig::new().outage_after(Duration::from_secs(5)));
        let t0 = Instant::now();
        let mut o = observe(&stats, t0, Phase::Running);
        o.events = Some((10, 100));
        assert_eq!(assessor.assess(&o).health, Health::Ready);
        o.now = t0 + Duration::from_secs(6);
        let a = assessor.assess(&o);
        let outage = Reason::EventsOutage { duration: Duration::from_secs(6), pending: 10 };
        assert_eq!(a.health, Health::Degraded { reasons: vec![outage] });
        // One delivery ends it.
        o.events = Some((10, 101));
        o.now = t0 + Duration::from_secs(7);
        assert_eq!(assessor.assess(&o).health, Health::Ready);
        // Nothing pending is no outage, however long it stays quiet.
        o.events = Some((0, 101));
        o.now = t0 + Duration::from_secs(60);
        assert_eq!(assessor.assess(&o).health, Health::Ready);
    }

    #[test]
    fn the_phases_override_the_reasons_and_only_failure_is_not_live() {
        let mut stats = snapshot();
        stats.children[0].state = ChildState::Stopped;
        let mut assessor = Assessor::new(HealthConfig::new());
        let now = Instant::now();
        for (phase, health, live) in [
            (Phase::Stopping, Health::Stopping, true),
            (Phase::Stopped, Health::Stopped, true),
            (Phase::Failed, Health::Failed, false),
        ] {
            let a = assessor.assess(&observe(&stats, now, phase));
            assert_eq!((a.health, a.live, a.ready), (health, live, false));
        }
    }

    #[test]
    fn a_rotation_not_ready_is_a_reason() {
        let stats = snapshot();
        let mut assessor = Assessor::new(HealthConfig::new());
        let mut o = observe(&stats, Instant::now(), Phase::Running);
        o.rotations_not_ready = vec!["https://c/ingest: new CA X by 2027-01-01".into()];
        let a = assessor.assess(&o);
        assert!(
            matches!(&a.health, Health::Degraded { reasons } if matches!(&reasons[0], Reason::RotationNotReady { .. }))
        );
        assert_eq!(a.health.to_string().split(": ").next(), Some("degraded"));
    }
}
