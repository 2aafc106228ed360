//! The running tree, as `main` holds it.

use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::error::{ConfigError, StartError, SystemError};
use crate::exit::ExitReason;
use crate::link::{Link, Report};
use crate::observe::{AbandonedThread, Bus, SupervisionEvent, SupervisorStats};
use crate::panic;
use crate::protocol::SupMsg;
use crate::runner::Runner;
use crate::spec::Body;
use crate::supervisor::{ShutdownBudget, SupervisorBuilder, SupervisorRef, live_budget, next_key};
use crate::watchdog::Pulse;

const ROOT_GENERATION: u64 = 1;

impl SupervisorBuilder {
    /// Validates the whole tree, then starts it as the root of a [`System`]:
    /// the root supervisor starts on its own thread, starts its children in
    /// order, and returns once all of them have started.
    ///
    /// # Errors
    ///
    /// [`StartError::Config`] for an invalid tree (nothing is started):
    /// among others a [significant](crate::ChildSpec::significant) child its
    /// supervisor's [`auto_shutdown`](SupervisorBuilder::auto_shutdown)
    /// refuses, or a tree whose worst-case shutdown exceeds a
    /// [`grace_period`](SupervisorBuilder::grace_period)
    /// ([`ConfigError::ShutdownBudget`]); or
    /// [`StartError::Child`] naming the deepest child that failed to start
    /// and why; the children started before it were stopped in reverse order.
    /// A binary built with `panic = "abort"` gets
    /// [`ConfigError::PanicAbort`].
    pub fn start(self) -> Result<System, StartError> {
        if cfg!(panic = "abort") {
            return Err(StartError::Config(ConfigError::PanicAbort));
        }
        let path = self.id.clone();
        if path.is_empty() || path.contains('/') {
            return Err(StartError::Config(ConfigError::InvalidId { id: path }));
        }
        self.validate_tree(&path)?;
        log::debug!(target: "vigil", "{path}: shutdown plan: {}", self.shutdown_budget());
        panic::install_hook();
        let bus = Arc::new(Bus::new(self.max_abandoned));
        let (tx, events) = crossbeam_channel::unbounded();
        let key = next_key();
        let mut link = Link::new(Arc::new(tx.clone()), key, path.clone().into(), Arc::clone(&bus));
        if let Some(timeout) = self.hang_timeout {
            // The root's own loop under the watchdog: `System` is its parent.
            let pulse = Arc::new(Pulse::new(timeout, None));
            link.pulse = Some(Arc::clone(&pulse));
            let report = Box::new(move |generation, reason| {
                let _ = tx.send(SupMsg::Child(Report::Hung { key, generation, reason }));
            });
            bus.watchdog.watch(pulse, report).map_err(|e| StartError::Child {
                path: path.clone(),
                reason: ExitReason::Spawn { error: e.to_string() },
            })?;
        }
        let handle = self.handle();
        let inbox = self.inbox.tx.clone();
        let runner = Runner::spawn(self.incarnation(), link, None).map_err(|e| StartError::Child {
            path: path.clone(),
            reason: ExitReason::Spawn { error: e.to_string() },
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        runner.start(ROOT_GENERATION, 0, Arc::clone(&stop), None);
        let started = events.recv();
        match started {
            Ok(SupMsg::Child(Report::Started { .. })) => {}
            Ok(SupMsg::Child(Report::Exited { reason, .. })) => {
                runner.quit();
                return Err(start_error(path, reason));
            }
            Ok(SupMsg::Child(Report::Hung { reason, .. })) => {
                let reason = abandon_hung_root(&bus, &path, runner, reason);
                bus.watchdog.stop();
                return Err(StartError::Child { path, reason });
            }
            _ => {
                runner.quit();
                return Err(StartError::Child {
                    path,
                    reason: ExitReason::Spawn { error: "the root thread ended unexpectedly".to_owned() },
                });
            }
        }
        log::info!(target: "vigil", "started {path}");
        Ok(System {
            root: self,
            handle,
            shutdown: ShutdownHandle { inbox, stop },
            events,
            runner: Some(runner),
            bus,
            started: Instant::now(),
        })
    }
}

/// Abandons the root's runner after the watchdog declared its loop hung;
/// the reason the system ends with.
fn abandon_hung_root(bus: &Bus, path: &str, runner: Runner, reason: ExitReason) -> ExitReason {
    let running = bus.hung(path, runner.abandon());
    if let ExitReason::Hung { hook, message_type, elapsed } = reason {
        let path = path.to_owned();
        bus.publish(|| SupervisionEvent::Hung { path, hook, message_type, elapsed, abandoned_threads: running });
    }
    log::warn!(target: "vigil", "{path} {reason}; the tree ends ({running} abandoned threads still running)");
    ExitReason::HungSupervisor { supervisor: path.to_owned(), cause: Box::new(reason) }
}

/// The deepest child that failed, with its own reason.
fn start_error(path: String, reason: ExitReason) -> StartError {
    match reason {
        ExitReason::ChildStartFailed { child, cause } => start_error(child, *cause),
        reason => StartError::Child { path, reason },
    }
}

/// A running supervision tree. `main` holds it and decides what to do when
/// the tree ends: [`wait`](System::wait) returns `Err` with the whole
/// failure chain if the root gave up.
///
/// Dropping a `System` shuts the tree down in order.
pub struct System {
    root: SupervisorBuilder,
    handle: SupervisorRef,
    shutdown: ShutdownHandle,
    events: Receiver<SupMsg>,
    runner: Option<Runner>,
    bus: Arc<Bus>,
    started: Instant,
}

impl fmt::Debug for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("System").field("root", &self.root.id).field("uptime", &self.started.elapsed()).finish()
    }
}

/// How an orderly shutdown went. It may gain fields: read them by name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Paths of children that did not stop within their shutdown timeout,
    /// or were declared hung, and are still running. Empty after a clean
    /// shutdown.
    pub abandoned: Vec<String>,
    /// The same threads, with how long each has been stuck.
    pub abandoned_threads: Vec<AbandonedThread>,
    /// How long the system ran (`uptime_ms` in JSON).
    #[serde(serialize_with = "crate::format::as_millis", rename = "uptime_ms")]
    pub uptime: Duration,
}

impl ShutdownReport {
    /// Whether every child stopped within its timeout.
    pub fn is_clean(&self) -> bool {
        self.abandoned.is_empty()
    }
}

/// The process exit code for a tree's outcome, for orchestrators: 0 after a
/// clean shutdown, 1 when the root gave up, 2 when the shutdown completed but
/// abandoned children.
///
/// # Examples
///
/// ```no_run
/// # use vigil_core::*;
/// # fn tree() -> SupervisorBuilder { unimplemented!() }
/// fn main() -> std::process::ExitCode {
///     let system = tree().start().expect("start");
///     system.shutdown_on_signals().expect("signal handler");
///     exit_code(&system.wait())
/// }
/// ```
pub fn exit_code(outcome: &Result<ShutdownReport, SystemError>) -> ExitCode {
    match outcome {
        Ok(report) if report.is_clean() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(2),
        Err(_) => ExitCode::from(1),
    }
}

/// Asks the tree to shut down, from any thread. Cheap to clone.
#[derive(Clone)]
pub struct ShutdownHandle {
    inbox: Sender<SupMsg>,
    stop: Arc<AtomicBool>,
}

impl fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShutdownHandle")
    }
}

impl ShutdownHandle {
    /// Requests an orderly shutdown and returns at once. The thread holding
    /// the [`System`] sees [`wait`](System::wait) return.
    pub fn shutdown(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.inbox.send(SupMsg::Stop { generation: ROOT_GENERATION });
    }
}

impl System {
    /// A handle to the root supervisor, for the dynamic children API.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let system = Supervisor::builder().child(ChildSpec::worker("a", || W)).start()?;
    /// system.root().start_child(ChildSpec::worker("b", || W)).unwrap();
    /// assert_eq!(system.root().count_children().active, 2);
    /// system.shutdown().unwrap();
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn root(&self) -> &SupervisorRef {
        &self.handle
    }

    /// A snapshot of the whole tree. Never blocks on a supervisor.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let system = Supervisor::builder().child(ChildSpec::worker("w", || W)).start()?;
    /// let json = serde_json::to_string(&system.stats()).unwrap();
    /// assert!(json.contains("\"path\":\"root/w\""));
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn stats(&self) -> SupervisorStats {
        tree_stats(&self.handle, &self.bus)
    }

    /// The worst-case time [`shutdown`](System::shutdown) takes now: the
    /// children that the tree has at this moment (dynamic ones included),
    /// each costing its shutdown timeout, in reverse start order; a nested
    /// supervisor costs its subtree's, capped by its own timeout when that is
    /// finite. See [`ShutdownBudget`]. Compare it with the orchestrator's
    /// grace period (`terminationGracePeriodSeconds`, `TimeoutStopSec`), or
    /// let [`SupervisorBuilder::grace_period`] check it at start. Never
    /// blocks on a supervisor.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # use std::time::Duration;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let pool = Supervisor::dynamic();
    /// let pool_ref = pool.handle();
    /// let system = Supervisor::builder()
    ///     .child(ChildSpec::worker("api", || W).shutdown(Duration::from_secs(2)))
    ///     .child(ChildSpec::supervisor("pool", pool))
    ///     .start()?;
    /// pool_ref.start_child(ChildSpec::worker("job", || W).shutdown(Duration::from_secs(3))).unwrap();
    /// let budget = system.shutdown_budget();
    /// assert_eq!(budget.total, Some(Duration::from_secs(5) + SHUTDOWN_SLACK_PER_CHILD * 3));
    /// assert_eq!(budget.children[0], ("root/pool/job".to_owned(), Some(Duration::from_secs(3))));
    /// system.shutdown().unwrap();
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn shutdown_budget(&self) -> ShutdownBudget {
        live_budget(&self.root)
    }

    /// Subscribes to lifecycle events of the whole tree.
    ///
    /// The channel holds at most [`SUBSCRIPTION_CAPACITY`](crate::SUBSCRIPTION_CAPACITY)
    /// events, so a subscriber that stops reading costs bounded memory. Events
    /// that do not fit are dropped for that subscriber alone and counted: the
    /// next event that fits comes after a
    /// [`SupervisionEvent::Lagged`] with the number missed.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use vigil_core::*;
    /// struct Flaky;
    /// impl Actor for Flaky {
    ///     type Msg = ();
    ///     fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> {
    ///         Err("flaky".into())
    ///     }
    /// }
    /// let spec = ChildSpec::worker("flaky", || Flaky);
    /// let addr = spec.addr();
    /// let system = Supervisor::builder().intensity(5, Duration::from_secs(5)).child(spec).start()?;
    /// let events = system.subscribe();
    /// addr.tell(()).unwrap();
    /// for event in events.iter() {
    ///     match event {
    ///         SupervisionEvent::Restarting { path, restarts, .. } => {
    ///             assert_eq!((path.as_str(), restarts), ("root/flaky", 1));
    ///             break;
    ///         }
    ///         SupervisionEvent::Lagged { missed } => eprintln!("missed {missed} events"),
    ///         _ => {}
    ///     }
    /// }
    /// system.shutdown().unwrap();
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn subscribe(&self) -> Receiver<SupervisionEvent> {
        self.bus.subscribe()
    }

    /// A read-only view of the tree for other threads: snapshots, events,
    /// and whether it is stopping or has ended. See [`SystemObserver`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let system = Supervisor::builder().child(ChildSpec::worker("w", || W)).start()?;
    /// let observer = system.observer();
    /// assert_eq!(observer.stats().children.len(), 1);
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn observer(&self) -> SystemObserver {
        SystemObserver {
            root: self.handle.clone(),
            bus: Arc::clone(&self.bus),
            stop: Arc::clone(&self.shutdown.stop),
            root_id: self.root.id.clone(),
        }
    }

    /// A handle that can request shutdown from other threads.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let system = Supervisor::builder().child(ChildSpec::worker("a", || W)).start()?;
    /// let handle = system.shutdown_handle();
    /// std::thread::spawn(move || handle.shutdown());
    /// assert!(system.wait().unwrap().is_clean());
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Turns SIGTERM and SIGINT into an orderly shutdown of the tree (opt-in).
    /// A second signal while the shutdown runs ends the process at once with
    /// exit code 130.
    ///
    /// # Errors
    ///
    /// The I/O error from registering the handlers or spawning their thread.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let system = Supervisor::builder().child(ChildSpec::worker("a", || W)).start()?;
    /// system.shutdown_on_signals()?;
    /// // What `systemctl stop` or `kill` would send:
    /// signal_hook::low_level::raise(signal_hook::consts::SIGTERM)?;
    /// let report = system.wait()?;
    /// assert!(report.is_clean());
    /// # Ok(())
    /// # }
    /// ```
    pub fn shutdown_on_signals(&self) -> std::io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
        let handle = self.shutdown_handle();
        std::thread::Builder::new().name("vigil:signals".to_owned()).spawn(move || {
            let mut seen = 0;
            for signal in signals.forever() {
                seen += 1;
                if seen == 1 {
                    log::info!(target: "vigil", "signal {signal}: shutting down");
                    handle.shutdown();
                } else {
                    log::warn!(target: "vigil", "signal {signal} during shutdown: exiting now");
                    std::process::exit(130);
                }
            }
        })?;
        Ok(())
    }

    /// Waits until the tree ends: after a [shutdown request](ShutdownHandle),
    /// or when the root gives up.
    ///
    /// # Errors
    ///
    /// [`SystemError`] with the whole failure chain when the root gave up.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let system = Supervisor::builder().child(ChildSpec::worker("a", || W)).start()?;
    /// let stop = system.shutdown_handle();
    /// std::thread::spawn(move || stop.shutdown()); // a signal, an admin endpoint ...
    /// let report = system.wait().unwrap(); // main blocks here until then
    /// assert!(report.is_clean());
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn wait(mut self) -> Result<ShutdownReport, SystemError> {
        self.wait_inner(None).unwrap_or_else(unreachable_outcome)
    }

    /// Like [`wait`](System::wait), for at most `timeout`; gives the system
    /// back if it is still running. A `timeout` too large for the clock
    /// (`Duration::MAX`, say) waits like `wait`.
    ///
    /// # Errors
    ///
    /// `Err(Ok(system))` on timeout; `Err(Err(error))` when the root gave up.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// # use std::time::Duration;
    /// let system = Supervisor::builder().child(ChildSpec::worker("a", || W)).start()?;
    /// let system = match system.wait_timeout(Duration::from_millis(10)) {
    ///     Err(Ok(system)) => system, // still running
    ///     other => panic!("{other:?}"),
    /// };
    /// system.shutdown().unwrap();
    /// # Ok::<(), StartError>(())
    /// ```
    #[allow(clippy::result_large_err)]
    pub fn wait_timeout(mut self, timeout: Duration) -> Result<ShutdownReport, Result<System, SystemError>> {
        // A timeout past the clock's range waits forever.
        match self.wait_inner(Instant::now().checked_add(timeout)) {
            Some(Ok(report)) => Ok(report),
            Some(Err(error)) => Err(Err(error)),
            None => Err(Ok(self)),
        }
    }

    /// Shuts the tree down in order (children in reverse start order, each
    /// within its shutdown timeout) and waits for it.
    ///
    /// # Errors
    ///
    /// [`SystemError`] if the root had already given up.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let system = Supervisor::builder().child(ChildSpec::worker("a", || W)).start()?;
    /// let report = system.shutdown().unwrap();
    /// assert!(report.is_clean());
    /// assert_eq!(exit_code(&Ok(report)), std::process::ExitCode::SUCCESS);
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn shutdown(self) -> Result<ShutdownReport, SystemError> {
        self.shutdown.shutdown();
        self.wait()
    }

    fn wait_inner(&mut self, deadline: Option<Instant>) -> Option<Result<ShutdownReport, SystemError>> {
        loop {
            let msg = match deadline {
                Some(deadline) => self.events.recv_deadline(deadline).ok()?,
                None => self.events.recv().ok()?,
            };
            let reason = match msg {
                SupMsg::Child(Report::Exited { reason, .. }) => {
                    if let Some(runner) = self.runner.take() {
                        runner.quit();
                    }
                    Some(reason)
                }
                // The root's own loop hung: nothing can stop its children in
                // order, so the tree ends here (see `SupervisorBuilder::hang_timeout`).
                SupMsg::Child(Report::Hung { reason, .. }) => {
                    self.runner.take().map(|runner| abandon_hung_root(&self.bus, &self.root.id, runner, reason))
                }
                _ => None,
            };
            if let Some(reason) = reason {
                // The tree is dead for good: every mailbox in it refuses
                // messages from now on, whoever still holds an address.
                self.root.close();
                self.bus.watchdog.stop();
                let abandoned_threads = self.bus.abandoned_threads();
                let abandoned: Vec<String> = abandoned_threads.iter().map(|a| a.path.clone()).collect();
                let uptime = self.started.elapsed();
                // A requested shutdown that had to abandon a hung nested
                // supervisor completed all the same; the report lists it.
                let requested = self.shutdown.stop.load(std::sync::atomic::Ordering::Relaxed);
                let completed = reason == ExitReason::Shutdown
                    || (requested
                        && matches!(&reason, ExitReason::HungSupervisor { supervisor, .. } if *supervisor != self.root.id));
                return Some(if completed {
                    log::info!(target: "vigil", "{} shut down ({} abandoned)", self.root.id, abandoned.len());
                    Ok(ShutdownReport { abandoned, abandoned_threads, uptime })
                } else {
                    log::error!(target: "vigil", "{} gave up: {reason}", self.root.id);
                    Err(SystemError { reason, abandoned })
                });
            }
        }
    }
}

/// A read-only view of a running [`System`] for threads other than the one
/// that holds it: snapshots, events, and whether the tree is stopping or
/// has ended. Health monitors and metrics exporters hold one while `main`
/// blocks in [`System::wait`]. Cheap to clone; every clone sees the same
/// tree, and it stays valid (showing the ended tree) after the `System` is
/// gone.
#[derive(Clone)]
pub struct SystemObserver {
    root: SupervisorRef,
    bus: Arc<Bus>,
    stop: Arc<AtomicBool>,
    root_id: String,
}

impl fmt::Debug for SystemObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SystemObserver").field("root", &self.root_id).finish()
    }
}

impl SystemObserver {
    /// The root's path (its id).
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let system = Supervisor::builder().child(ChildSpec::worker("w", || W)).start()?;
    /// assert_eq!(system.observer().root_path(), "root");
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn root_path(&self) -> &str {
        &self.root_id
    }

    /// The same snapshot as [`System::stats`], tree-wide counters included.
    /// Never blocks on a supervisor.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let system = Supervisor::builder().child(ChildSpec::worker("w", || W)).start()?;
    /// let observer = system.observer();
    /// let stats = std::thread::spawn(move || observer.stats()).join().unwrap();
    /// assert_eq!(stats.children[0].path, "root/w");
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn stats(&self) -> SupervisorStats {
        tree_stats(&self.root, &self.bus)
    }

    /// Subscribes to the tree's lifecycle events, as [`System::subscribe`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let system = Supervisor::builder().child(ChildSpec::worker("w", || W)).start()?;
    /// let events = system.observer().subscribe();
    /// system.root().terminate_child("w").unwrap();
    /// assert!(events.iter().any(|e| matches!(e, SupervisionEvent::Exited { .. })));
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn subscribe(&self) -> Receiver<SupervisionEvent> {
        self.bus.subscribe()
    }

    /// Whether an orderly shutdown of the whole tree was requested (by
    /// [`ShutdownHandle::shutdown`], a signal, [`System::shutdown`] or
    /// dropping the `System`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let system = Supervisor::builder().child(ChildSpec::worker("w", || W)).start()?;
    /// let observer = system.observer();
    /// assert!(!observer.shutdown_requested());
    /// system.shutdown().unwrap();
    /// assert!(observer.shutdown_requested());
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn shutdown_requested(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the root supervisor is still running: false once the tree has
    /// ended, after a shutdown or because the root gave up.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let system = Supervisor::builder().child(ChildSpec::worker("w", || W)).start()?;
    /// let observer = system.observer();
    /// assert!(observer.is_running());
    /// system.shutdown().unwrap();
    /// assert!(!observer.is_running());
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn is_running(&self) -> bool {
        self.root.is_running()
    }
}

/// The root's snapshot with the tree-wide counters only the bus knows.
fn tree_stats(root: &SupervisorRef, bus: &Bus) -> SupervisorStats {
    let mut stats = root.stats();
    (stats.hangs_total, stats.late_returns) = bus.hang_counts();
    stats.abandoned_threads = bus.abandoned_threads();
    stats
}

/// `wait` without a deadline only returns `None` if the root's report
/// channel disconnected, which the runner loop never does before reporting.
fn unreachable_outcome() -> Result<ShutdownReport, SystemError> {
    Err(SystemError {
        reason: ExitReason::Spawn { error: "the root thread ended without reporting".to_owned() },
        abandoned: Vec::new(),
    })
}

impl Drop for System {
    fn drop(&mut self) {
        if self.runner.is_some() {
            self.shutdown.shutdown();
            let _ = self.wait_inner(None);
        }
    }
}
