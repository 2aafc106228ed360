//! systemd's `Type=notify` protocol, driven by the health reports:
//! `READY=1`, `STATUS=`, `WATCHDOG=1` only while live, `STOPPING=1`, and
//! `EXTEND_TIMEOUT_USEC` while a long shutdown makes progress.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::error::HealthError;
use crate::model::Health;
use crate::monitor::HealthReport;
use crate::watch::Watch;

/// The longest a `STATUS=` line waits behind a change, and the least time
/// between two of them: the line changes with every event, and systemd
/// needs it for people, not for decisions.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Sends systemd the tree's health over the `NOTIFY_SOCKET` datagram
/// protocol (through the `sd-notify` crate's message format).
///
/// - `READY=1` (with a `STATUS=` line) once the ordered start has completed;
/// - `STATUS=` with [`HealthReport::status_line`] when it changes, at most
///   once a second;
/// - `WATCHDOG=1` every half of the watchdog interval, **only while the
///   report is live**: a wedged process stops pinging and systemd restarts
///   it (`WatchdogSec=` in the unit). None after `STOPPING=1`: systemd
///   disarms its watchdog when the stop begins, and `TimeoutStopSec=`
///   governs from there;
/// - `STOPPING=1` once a shutdown starts;
/// - `EXTEND_TIMEOUT_USEC=` every second of a shutdown that made progress
///   in that second, so a long drain that moves is not killed by
///   `TimeoutStopSec=`, and one that is stuck is.
///
/// Disabled (it sends nothing and spawns nothing) when there is no socket:
/// [`from_env`](SystemdNotifier::from_env) outside systemd.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct SystemdNotifier {
    socket: Option<OsString>,
    watchdog: Option<Duration>,
    extend: Duration,
}

impl SystemdNotifier {
    /// Reads `NOTIFY_SOCKET`, and `WATCHDOG_USEC` (for this process, per
    /// `WATCHDOG_PID`), as systemd sets them. Without `NOTIFY_SOCKET` the
    /// notifier is disabled. Reads the environment once and never changes
    /// it.
    ///
    /// # Examples
    ///
    /// ```
    /// let notifier = vigil_health::SystemdNotifier::from_env();
    /// assert_eq!(notifier.is_enabled(), std::env::var_os("NOTIFY_SOCKET").is_some());
    /// ```
    pub fn from_env() -> SystemdNotifier {
        SystemdNotifier {
            socket: std::env::var_os("NOTIFY_SOCKET").filter(|s| !s.is_empty()),
            watchdog: sd_notify::watchdog_enabled(),
            extend: Duration::from_secs(10),
        }
    }

    /// Notifies the socket at `path` (a file path, or `@name` for an
    /// abstract socket), with no watchdog: for tests and for services that
    /// pass the socket themselves.
    ///
    /// # Examples
    ///
    /// ```
    /// let notifier = vigil_health::SystemdNotifier::new("/run/my-notify.sock");
    /// assert!(notifier.is_enabled());
    /// ```
    pub fn new(path: impl Into<PathBuf>) -> SystemdNotifier {
        SystemdNotifier { socket: Some(path.into().into_os_string()), watchdog: None, extend: Duration::from_secs(10) }
    }

    /// The watchdog interval (systemd's `WatchdogSec=`): `WATCHDOG=1` is sent
    /// every half of it while live. `None` sends no pings. Defaults to
    /// `WATCHDOG_USEC` with [`from_env`](SystemdNotifier::from_env), else
    /// `None`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let notifier = vigil_health::SystemdNotifier::new("/run/n.sock").watchdog(Some(Duration::from_secs(10)));
    /// assert_eq!(notifier.ping_every(), Some(Duration::from_secs(5)));
    /// ```
    pub fn watchdog(mut self, interval: Option<Duration>) -> SystemdNotifier {
        self.watchdog = interval.filter(|i| !i.is_zero());
        self
    }

    /// How much more time each `EXTEND_TIMEOUT_USEC=` asks for during a
    /// shutdown that makes progress. Defaults to 10 s.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let _ = vigil_health::SystemdNotifier::new("/run/n.sock").extend_timeout(Duration::from_secs(30));
    /// ```
    pub fn extend_timeout(mut self, extend: Duration) -> SystemdNotifier {
        self.extend = extend;
        self
    }

    /// Whether there is a socket to notify.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(vigil_health::SystemdNotifier::new("/run/n.sock").is_enabled());
    /// ```
    pub fn is_enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// How often `WATCHDOG=1` is sent while live: half the watchdog interval.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(vigil_health::SystemdNotifier::new("/run/n.sock").ping_every(), None);
    /// ```
    pub fn ping_every(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    /// Starts the notifier's thread, which follows `watch` until the tree
    /// has ended (after `STOPPING=1`) or the watch is closed. Disabled, it
    /// returns a handle with no thread.
    ///
    /// # Errors
    ///
    /// [`HealthError::Spawn`] when the thread cannot be spawned;
    /// [`HealthError::InvalidConfig`] for an extension under 1 s.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let system = Supervisor::builder().child(ChildSpec::worker("w", || W)).start()?;
    /// let monitor = vigil_health::HealthMonitor::builder(system.observer()).start()?;
    /// // Outside systemd (no NOTIFY_SOCKET) this sends nothing.
    /// let notifier = vigil_health::SystemdNotifier::from_env().start(monitor.watch())?;
    /// system.shutdown()?;
    /// monitor.stop();
    /// notifier.join();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start(self, watch: Watch<HealthReport>) -> Result<NotifierHandle, HealthError> {
        if self.extend < Duration::from_secs(1) {
            return Err(HealthError::InvalidConfig { setting: "extend_timeout", why: "must be at least 1 s" });
        }
        let Some(socket) = self.socket.clone() else {
            return Ok(NotifierHandle { thread: None });
        };
        let mut plan = Plan::new(self.watchdog.map(|w| w / 2), self.extend);
        let thread = std::thread::Builder::new()
            .name("vigil:sd-notify".to_owned())
            .spawn(move || run(&socket, &mut plan, watch))
            .map_err(HealthError::Spawn)?;
        Ok(NotifierHandle { thread: Some(thread) })
    }
}

/// The running notifier. Its thread ends by itself once the tree has ended
/// or the watch is closed; [`join`](NotifierHandle::join) waits for that.
#[derive(Debug)]
pub struct NotifierHandle {
    thread: Option<JoinHandle<()>>,
}

impl NotifierHandle {
    /// Waits for the notifier to finish (after `STOPPING=1` and the tree's
    /// end, or the watch's close).
    ///
    /// # Examples
    ///
    /// ```
    /// let (publisher, watch) = vigil_health::report_channel();
    /// let notifier = vigil_health::SystemdNotifier::from_env().start(watch)?;
    /// drop(publisher);
    /// notifier.join();
    /// # Ok::<(), vigil_health::HealthError>(())
    /// ```
    pub fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(socket: &OsString, plan: &mut Plan, mut watch: Watch<HealthReport>) {
    let Ok(sender) = UnixDatagram::unbound() else {
        log::warn!(target: "vigil", "systemd notifier: cannot open a datagram socket; no notifications");
        return;
    };
    let mut failed = false;
    loop {
        let report = watch.get();
        let now = Instant::now();
        let lines = plan.step(now, &report);
        if !lines.is_empty() {
            let message: String = lines.iter().map(|l| format!("{l}\n")).collect();
            match send(&sender, socket, message.as_bytes()) {
                Ok(()) => failed = false,
                Err(e) if !failed => {
                    failed = true;
                    log::warn!(target: "vigil", "systemd notifier: cannot send to {socket:?}: {e}");
                }
                Err(_) => {}
            }
        }
        if plan.done(&report) {
            return;
        }
        let wait = plan.next_wake(now, &report).saturating_duration_since(now);
        if !watch.changed(wait) && watch.is_closed() {
            return;
        }
    }
}

fn send(sender: &UnixDatagram, socket: &OsString, message: &[u8]) -> std::io::Result<()> {
    let bytes = socket.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sender.send_to_addr(message, &addr).map(|_| ())
    } else {
        sender.send_to(message, socket).map(|_| ())
    }
}

/// What to send when: the notifier's pure state machine (clock injected).
#[derive(Debug)]
pub(crate) struct Plan {
    ping_every: Option<Duration>,
    extend: Duration,
    ready_sent: bool,
    stopping_sent: bool,
    status: Option<(String, Instant)>,
    next_ping: Option<Instant>,
    /// The progress figure at the last extension, and when it was sent.
    extended: Option<(u64, Instant)>,
}

/// One line of a notification, in `sd-notify`'s format.
pub(crate) type Line = String;

impl Plan {
    pub(crate) fn new(ping_every: Option<Duration>, extend: Duration) -> Plan {
        Plan {
            ping_every,
            extend,
            ready_sent: false,
            stopping_sent: false,
            status: None,
            next_ping: None,
            extended: None,
        }
    }

    /// The lines to send now, given the latest report.
    pub(crate) fn step(&mut self, now: Instant, report: &HealthReport) -> Vec<Line> {
        let mut lines = Vec::new();
        let stopping = matches!(report.health, Health::Stopping | Health::Stopped | Health::Failed);
        if report.started && !self.ready_sent && !stopping {
            self.ready_sent = true;
            lines.push(NotifyState::Ready.to_string());
        }
        if stopping && !self.stopping_sent {
            self.stopping_sent = true;
            lines.push(NotifyState::Stopping.to_string());
            self.extended = Some((report.progress, now));
        }
        let status = report.status_line();
        let due = match &self.status {
            None => true,
            Some((last, at)) => *last != status && now.saturating_duration_since(*at) >= STATUS_EVERY,
        };
        if due || (!lines.is_empty() && self.status.as_ref().is_none_or(|(last, _)| *last != status)) {
            lines.push(NotifyState::Status(&status).to_string());
            self.status = Some((status, now));
        }
        if let Some(every) = self.ping_every
            && self.may_ping(report)
            && self.next_ping.is_none_or(|at| now >= at)
        {
            lines.push(NotifyState::Watchdog.to_string());
            self.next_ping = now.checked_add(every);
        }
        if report.health == Health::Stopping
            && let Some((progress, at)) = self.extended
            && now.saturating_duration_since(at) >= Duration::from_secs(1)
        {
            if report.progress != progress {
                let usec = u32::try_from(self.extend.as_micros()).unwrap_or(u32::MAX);
                lines.push(NotifyState::ExtendTimeoutUsec(usec).to_string());
            }
            self.extended = Some((report.progress, now));
        }
        lines
    }

    /// Whether a ping may be sent for `report` (its time aside).
    fn may_ping(&self, report: &HealthReport) -> bool {
        self.ping_every.is_some() && report.live && report.started && !self.stopping_sent
    }

    /// When the thread must look again even if nothing changes: the next
    /// ping (when one may be sent), else the next status or extension check.
    /// A change of the report wakes it sooner.
    pub(crate) fn next_wake(&self, now: Instant, report: &HealthReport) -> Instant {
        let soon = now.checked_add(STATUS_EVERY).unwrap_or(now);
        match self.next_ping {
            Some(ping) if ping < soon && self.may_ping(report) => ping.max(now),
            _ => soon,
        }
    }

    /// Whether the notifier's work is over.
    pub(crate) fn done(&self, report: &HealthReport) -> bool {
        self.stopping_sent && report.health.is_terminal()
    }
}

impl fmt::Display for SystemdNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.socket {
            Some(socket) => write!(f, "systemd notifier to {socket:?}"),
            None => f.write_str("systemd notifier (disabled: no NOTIFY_SOCKET)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(health: Health, live: bool, progress: u64) -> HealthReport {
        let mut r = HealthReport::starting();
        r.started = health != Health::Starting;
        r.ready = matches!(health, Health::Ready);
        r.health = health;
        r.live = live;
        r.progress = progress;
        r
    }

    fn has(lines: &[Line], prefix: &str) -> bool {
        lines.iter().any(|l| l.starts_with(prefix))
    }

    #[test]
    fn ready_once_then_pings_every_half_interval_while_live() {
        let mut plan = Plan::new(Some(Duration::from_secs(5)), Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(!has(&plan.step(t0, &report(Health::Starting, true, 0)), "READY=1"));
        let first = plan.step(t0, &report(Health::Ready, true, 0));
        assert!(has(&first, "READY=1") && has(&first, "WATCHDOG=1") && has(&first, "STATUS=ready"));
        let again = plan.step(t0 + Duration::from_secs(1), &report(Health::Ready, true, 0));
        assert!(!has(&again, "READY=1") && !has(&again, "WATCHDOG=1"));
        assert!(has(&plan.step(t0 + Duration::from_secs(5), &report(Health::Ready, true, 0)), "WATCHDOG=1"));
        // Not live: no ping, however late.
        assert!(!has(&plan.step(t0 + Duration::from_secs(60), &report(Health::Ready, false, 0)), "WATCHDOG=1"));
        // Stopping: systemd's watchdog is off; no ping either.
        assert!(has(&plan.step(t0 + Duration::from_secs(61), &report(Health::Stopping, true, 0)), "STOPPING=1"));
        assert!(!has(&plan.step(t0 + Duration::from_secs(70), &report(Health::Stopping, true, 0)), "WATCHDOG=1"));
    }

    #[test]
    fn stopping_once_and_extensions_only_while_progressing() {
        let mut plan = Plan::new(None, Duration::from_secs(10));
        let t0 = Instant::now();
        plan.step(t0, &report(Health::Ready, true, 0));
        let stop = plan.step(t0, &report(Health::Stopping, true, 0));
        assert!(has(&stop, "STOPPING=1"));
        let moved = plan.step(t0 + Duration::from_secs(1), &report(Health::Stopping, true, 5));
        assert!(moved.contains(&"EXTEND_TIMEOUT_USEC=10000000".to_owned()), "{moved:?}");
        let stuck = plan.step(t0 + Duration::from_secs(2), &report(Health::Stopping, true, 5));
        assert!(!has(&stuck, "EXTEND_TIMEOUT_USEC") && !has(&stuck, "STOPPING=1"));
        assert!(!plan.done(&report(Health::Stopping, true, 5)));
        assert!(plan.done(&report(Health::Stopped, true, 5)));
    }

    #[test]
    fn no_ping_due_means_no_early_wake() {
        let mut plan = Plan::new(Some(Duration::from_millis(100)), Duration::from_secs(10));
        let t0 = Instant::now();
        let live = report(Health::Ready, true, 0);
        plan.step(t0, &live);
        assert_eq!(plan.next_wake(t0, &live), t0 + Duration::from_millis(100));
        // Not live, with the ping long overdue: wait for a change or a second, not spin.
        let wedged = report(Health::Ready, false, 0);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(plan.next_wake(later, &wedged), later + STATUS_EVERY);
    }

    #[test]
    fn status_lines_are_rate_limited() {
        let mut plan = Plan::new(None, Duration::from_secs(10));
        let t0 = Instant::now();
        let mut r = report(Health::Ready, true, 0);
        assert!(has(&plan.step(t0, &r), "STATUS="));
        r.running = 3;
        assert!(!has(&plan.step(t0 + Duration::from_millis(100), &r), "STATUS="));
        assert!(has(&plan.step(t0 + Duration::from_secs(1), &r), "STATUS="));
    }
}
