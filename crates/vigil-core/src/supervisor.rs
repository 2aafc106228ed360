//! Supervisors: strategies, restart intensity, backoff, ordered start and
//! shutdown, escalation, and the dynamic children API.
//!
//! A supervisor runs on its own runner thread and owns its children's
//! runners. It reacts to three kinds of input, all through one inbox: reports
//! from children (started, exited), requests from [`SupervisorRef`]s and its
//! parent's stop request. Backoff delays are timers on that inbox, so a
//! supervisor waiting to restart a child still answers requests and stops
//! promptly.

use std::collections::VecDeque;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::backoff::Jitter;
use crate::error::{ConfigError, ControlError, StartError};
use crate::exit::{ExitReason, Hook};
use crate::intensity::{RestartWindow, Verdict};
use crate::observe::{Bus, ChildState, ChildStats, Node, Row, SupervisionEvent, SupervisorStats, human};
use crate::panic;
use crate::runner::{self, Caller, FastRestart, Incarnate, Link, Runner};
use crate::spec::{Body, ChildSpec, Restart};

/// Which children a supervisor restarts when one of them fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Restart only the child that exited. The default.
    #[default]
    OneForOne,
    /// Stop all other children (in reverse start order), then restart all of
    /// them in start order.
    OneForAll,
    /// Stop the children started after the one that exited (in reverse
    /// order), then restart it and them in start order.
    RestForOne,
}

/// Messages to a supervisor's inbox.
pub(crate) enum SupMsg {
    Started {
        key: u64,
        generation: u64,
    },
    Exited {
        key: u64,
        generation: u64,
        reason: ExitReason,
    },
    /// The runner already restarted its child in place (see `FastRestart`);
    /// `started` tells whether the new incarnation's start succeeded.
    Restarted {
        key: u64,
        generation: u64,
        reason: ExitReason,
        count: u32,
        started: bool,
    },
    Stop {
        generation: u64,
    },
    /// Try again to restart a child whose restart failed, as OTP's
    /// `try_again_restart`: through the inbox, so that requests, other exits
    /// and a stop are served between attempts.
    Retry {
        key: u64,
        reason: ExitReason,
    },
    /// A request from a [`SupervisorRef`]; `caller` is the key of the child
    /// that made it from its own thread, if any.
    Control {
        control: Control,
        caller: Option<u64>,
    },
}

type Answer = Sender<Result<(), ControlError>>;

pub(crate) enum Control {
    Start(ChildSpec, Answer),
    Terminate(String, Answer),
    Restart(String, Answer),
    Delete(String, Answer),
}

/// Entry points for building supervisor trees.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use vigil_core::*;
///
/// struct Worker;
/// impl Actor for Worker {
///     type Msg = ();
///     fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) }
/// }
///
/// let pool = Supervisor::dynamic().max_children(100);
/// let pool_ref = pool.handle();
/// let system = Supervisor::builder()
///     .strategy(Strategy::OneForOne)
///     .intensity(3, Duration::from_secs(5))
///     .child(ChildSpec::worker("logger", || Worker))
///     .child(ChildSpec::supervisor("pool", pool))
///     .start()?;
/// pool_ref.start_child(ChildSpec::worker("w1", || Worker)).unwrap();
/// assert_eq!(pool_ref.count_children().active, 1);
/// system.shutdown().unwrap();
/// # Ok::<(), StartError>(())
/// ```
#[derive(Debug)]
pub struct Supervisor;

impl Supervisor {
    /// A supervisor with a static list of children. Used as the root, start
    /// it with [`SupervisorBuilder::start`]; nested, wrap it in
    /// [`ChildSpec::supervisor`].
    pub fn builder() -> SupervisorBuilder {
        SupervisorBuilder::new(false)
    }

    /// A dynamic supervisor (OTP's `simple_one_for_one`, Elixir's
    /// `DynamicSupervisor`): one-for-one, may start empty, children are added
    /// at run time with [`SupervisorRef::start_child`], bounded by
    /// [`max_children`](SupervisorBuilder::max_children). A child that stops
    /// for good (terminated through the API, or a transient or temporary
    /// child that exited without being restarted) is removed, and its id is
    /// free again.
    pub fn dynamic() -> SupervisorBuilder {
        SupervisorBuilder::new(true)
    }
}

pub(crate) struct Inbox {
    pub(crate) tx: Sender<SupMsg>,
    pub(crate) rx: Receiver<SupMsg>,
}

/// Builds a supervisor. Setters take `self` and chain.
#[must_use]
#[derive(Clone)]
pub struct SupervisorBuilder {
    pub(crate) id: String,
    strategy: Strategy,
    intensity: u32,
    period: Duration,
    max_children: Option<usize>,
    dynamic: bool,
    children: Vec<ChildSpec>,
    pub(crate) inbox: Arc<Inbox>,
    node: Arc<Node>,
}

impl fmt::Debug for SupervisorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorBuilder")
            .field("id", &self.id)
            .field("strategy", &self.strategy)
            .field("intensity", &self.intensity)
            .field("period", &self.period)
            .field("children", &self.children)
            .finish()
    }
}

impl SupervisorBuilder {
    fn new(dynamic: bool) -> SupervisorBuilder {
        let (tx, rx) = crossbeam_channel::unbounded();
        SupervisorBuilder {
            id: "root".to_owned(),
            strategy: Strategy::OneForOne,
            intensity: 1,
            period: Duration::from_secs(5),
            max_children: None,
            dynamic,
            children: Vec::new(),
            inbox: Arc::new(Inbox { tx, rx }),
            node: Arc::new(Node::default()),
        }
    }

    pub(crate) fn with_id(mut self, id: String) -> SupervisorBuilder {
        self.id = id;
        self
    }

    /// The restart strategy. A dynamic supervisor is always one-for-one.
    /// Defaults to [`Strategy::OneForOne`].
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        if !self.dynamic {
            self.strategy = strategy;
        }
        self
    }

    /// At most `intensity` restarts in any `period`; one more and the
    /// supervisor gives up and escalates. Both must be non-zero, and the
    /// intensity at most [`MAX_INTENSITY`]: the rule keeps one timestamp per
    /// restart in the period. Defaults to 1 restart in 5 s, as OTP.
    pub fn intensity(mut self, intensity: u32, period: Duration) -> Self {
        self.intensity = intensity;
        self.period = period;
        self
    }

    /// The most children this supervisor holds; further
    /// [`start_child`](SupervisorRef::start_child) calls fail with
    /// [`ControlError::MaxChildren`]. Defaults to no limit.
    pub fn max_children(mut self, max: usize) -> Self {
        self.max_children = Some(max);
        self
    }

    /// Adds a child. Children start in the order they are added and stop in
    /// reverse.
    pub fn child(mut self, spec: impl Into<ChildSpec>) -> Self {
        self.children.push(spec.into());
        self
    }

    /// Adds several children, in order.
    pub fn children<I: IntoIterator<Item = S>, S: Into<ChildSpec>>(mut self, specs: I) -> Self {
        self.children.extend(specs.into_iter().map(Into::into));
        self
    }

    /// A handle to this supervisor for the dynamic children API. It stays
    /// valid across the supervisor's restarts.
    pub fn handle(&self) -> SupervisorRef {
        SupervisorRef { tx: self.inbox.tx.clone(), node: Arc::clone(&self.node), timeout: Duration::from_secs(30) }
    }

    pub(crate) fn node(&self) -> &Arc<Node> {
        &self.node
    }

    pub(crate) fn validate_tree(&self, path: &str) -> Result<(), ConfigError> {
        if self.intensity == 0 {
            return Err(ConfigError::ZeroIntensity { supervisor: path.to_owned() });
        }
        if self.intensity > MAX_INTENSITY {
            return Err(ConfigError::IntensityTooLarge {
                supervisor: path.to_owned(),
                intensity: self.intensity,
                max: MAX_INTENSITY,
            });
        }
        if self.period.is_zero() {
            return Err(ConfigError::ZeroPeriod { supervisor: path.to_owned() });
        }
        if self.children.is_empty() && !self.dynamic {
            return Err(ConfigError::EmptyTree { supervisor: path.to_owned() });
        }
        let mut seen = std::collections::HashSet::new();
        for child in &self.children {
            if !seen.insert(child.common.id.as_str()) {
                return Err(ConfigError::DuplicateId { supervisor: path.to_owned(), id: child.common.id.clone() });
            }
            child.validate(path)?;
        }
        Ok(())
    }
}

impl Body for SupervisorBuilder {
    fn incarnation(&self) -> Box<dyn Incarnate> {
        Box::new(SupervisorBody { builder: self.clone() })
    }

    fn wake(&self, generation: u64) {
        let _ = self.inbox.tx.send(SupMsg::Stop { generation });
    }

    fn mailbox_len(&self) -> usize {
        self.inbox.rx.len()
    }

    /// Closes every child's mailbox, down the whole subtree, so that a tree
    /// stopped for good refuses messages. A restart reopens each child as it
    /// starts it.
    fn close(&self) -> usize {
        let bodies: Vec<Arc<dyn Body>> = self.node.inner.lock().rows.iter().map(|r| Arc::clone(&r.body)).collect();
        let mut direct: Vec<Arc<dyn Body>> = self.children.iter().map(|c| Arc::clone(&c.body)).collect();
        direct.extend(bodies);
        direct.iter().map(|body| body.close()).sum()
    }

    fn reopen(&self) {}

    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        self.validate_tree(path)
    }

    fn supervisor(&self) -> Option<&SupervisorBuilder> {
        Some(self)
    }
}

/// Counts of a supervisor's children, as OTP's `count_children`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ChildCounts {
    /// All children, running or not.
    pub specs: usize,
    /// Running children.
    pub active: usize,
    /// Children that are supervisors.
    pub supervisors: usize,
    /// Children that are workers.
    pub workers: usize,
}

/// A handle to a running supervisor: start, terminate, restart and delete
/// children, list and count them. Cheap to clone; stays valid across the
/// supervisor's restarts.
///
/// Requests wait for the supervisor to answer, at most
/// [`timeout`](SupervisorRef::timeout) (30 s unless changed). A supervisor
/// that is starting or stopping a child answers when that is done. A
/// supervisor that is not running (stopped for good, or between two of its
/// incarnations) refuses requests at once with
/// [`ControlError::SupervisorGone`], as OTP's `noproc`.
///
/// A child may make requests of its own supervisor from `handle`, including
/// [`terminate_child`](SupervisorRef::terminate_child) of itself (answered
/// before the supervisor waits for it to stop). From its factory or `started`
/// hook, or from `stopped` while it is being stopped, a request would wait
/// for the caller itself, and fails at once with
/// [`ControlError::WouldDeadlock`].
#[derive(Clone)]
pub struct SupervisorRef {
    tx: Sender<SupMsg>,
    node: Arc<Node>,
    timeout: Duration,
}

impl fmt::Debug for SupervisorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorRef").field("node", &self.node).field("timeout", &self.timeout).finish()
    }
}

impl SupervisorRef {
    /// The same handle with another answer timeout. Defaults to 30 s.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> SupervisorRef {
        self.timeout = timeout;
        self
    }

    /// Adds a child at the end of the start order and starts it.
    ///
    /// # Errors
    ///
    /// [`ControlError::AlreadyExists`], [`ControlError::MaxChildren`],
    /// [`ControlError::Config`], [`ControlError::Start`] if its start failed
    /// (the child is not kept), [`ControlError::SupervisorGone`] or
    /// [`ControlError::Timeout`].
    pub fn start_child(&self, spec: impl Into<ChildSpec>) -> Result<(), ControlError> {
        let spec = spec.into();
        self.request(|answer| Control::Start(spec, answer))
    }

    /// Stops a child and keeps its spec, so it can be restarted with
    /// [`restart_child`](SupervisorRef::restart_child). A temporary child,
    /// and any child of a [dynamic](Supervisor::dynamic) supervisor, is
    /// removed instead. Messages sent to a terminated child fail with
    /// `Closed`. A child may terminate itself from `handle`: the answer comes
    /// before the supervisor waits for it to stop.
    ///
    /// # Errors
    ///
    /// [`ControlError::NotFound`], [`ControlError::SupervisorGone`] or [`ControlError::Timeout`].
    pub fn terminate_child(&self, id: &str) -> Result<(), ControlError> {
        let id = id.to_owned();
        self.request(|answer| Control::Terminate(id, answer))
    }

    /// Starts a child that was terminated or stopped normally.
    ///
    /// # Errors
    ///
    /// [`ControlError::NotFound`], [`ControlError::Running`],
    /// [`ControlError::Start`], [`ControlError::SupervisorGone`] or [`ControlError::Timeout`].
    pub fn restart_child(&self, id: &str) -> Result<(), ControlError> {
        let id = id.to_owned();
        self.request(|answer| Control::Restart(id, answer))
    }

    /// Removes the spec of a child that is not running.
    ///
    /// # Errors
    ///
    /// [`ControlError::NotFound`], [`ControlError::Running`],
    /// [`ControlError::SupervisorGone`] or [`ControlError::Timeout`].
    pub fn delete_child(&self, id: &str) -> Result<(), ControlError> {
        let id = id.to_owned();
        self.request(|answer| Control::Delete(id, answer))
    }

    /// The children with their state, in start order. Never blocks on the
    /// supervisor.
    pub fn which_children(&self) -> Vec<ChildStats> {
        self.node.snapshot().children
    }

    /// Counts the children. Never blocks on the supervisor.
    pub fn count_children(&self) -> ChildCounts {
        let state = self.node.inner.lock();
        let mut counts = ChildCounts { specs: state.rows.len(), ..ChildCounts::default() };
        for row in &state.rows {
            if row.state == ChildState::Running {
                counts.active += 1;
            }
            if row.body.supervisor().is_some() {
                counts.supervisors += 1;
            } else {
                counts.workers += 1;
            }
        }
        counts
    }

    /// A snapshot of this supervisor and its subtree. Never blocks on the
    /// supervisor.
    pub fn stats(&self) -> SupervisorStats {
        self.node.snapshot()
    }

    fn request(&self, make: impl FnOnce(Answer) -> Control) -> Result<(), ControlError> {
        let caller = match runner::caller(&self.tx) {
            Caller::Other => None,
            Caller::Child(key) => Some(key),
            Caller::Awaited(path) => return Err(ControlError::WouldDeadlock { caller: path.to_string() }),
        };
        let (answer, reply) = crossbeam_channel::bounded(1);
        {
            // Under the node's lock, which the supervisor takes to mark itself
            // stopped before it drops what is left in its inbox: a request is
            // either refused here or answered (or dropped) by this incarnation,
            // never left for a later one.
            let node = self.node.inner.lock();
            if !node.running {
                return Err(ControlError::SupervisorGone);
            }
            self.tx
                .send(SupMsg::Control { control: make(answer), caller })
                .map_err(|_| ControlError::SupervisorGone)?;
        }
        match reply.recv_timeout(self.timeout) {
            Ok(result) => result,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(ControlError::Timeout(self.timeout)),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(ControlError::SupervisorGone),
        }
    }
}

/// The largest restart intensity a supervisor accepts. The intensity rule
/// keeps the time of every restart within the period, at most `intensity` of
/// them (16 bytes each), so this bounds a supervisor's memory under a restart
/// storm at 16 MB.
pub const MAX_INTENSITY: u32 = 1_000_000;

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_key() -> u64 {
    NEXT_KEY.fetch_add(1, Ordering::Relaxed)
}

/// One incarnation of a supervisor.
struct SupervisorBody {
    builder: SupervisorBuilder,
}

impl Incarnate for SupervisorBody {
    fn run(&mut self, link: &Link, generation: u64, _incarnation: u64, _stop: &AtomicBool) -> (ExitReason, bool) {
        let builder = &self.builder;
        let window = Arc::new(parking_lot::Mutex::new(RestartWindow::new(builder.intensity, builder.period)));
        let mut sup = Sup {
            path: Arc::clone(&link.path),
            strategy: builder.strategy,
            max_children: builder.max_children,
            dynamic: builder.dynamic,
            inbox: builder.inbox.rx.clone(),
            self_tx: builder.inbox.tx.clone(),
            window: Arc::clone(&window),
            terminating: Arc::new(AtomicBool::new(false)),
            started: false,
            children: Vec::new(),
            deferred: VecDeque::new(),
            timers: Vec::new(),
            jitter: Jitter::seeded(),
            bus: Arc::clone(&link.bus),
            node: Arc::clone(&builder.node),
        };
        {
            let mut node = sup.node.inner.lock();
            node.path = link.path.to_string();
            node.strategy = builder.strategy;
            node.intensity = builder.intensity;
            node.period = builder.period;
            node.window = Some(window);
            node.restarts_total = 0;
            node.rows.clear();
            node.running = true;
        }
        let outcome = match catch_unwind(AssertUnwindSafe(|| sup.run(link, generation, &builder.children))) {
            Ok(outcome) => outcome,
            Err(payload) => {
                let reason = panic::panicked(Hook::Supervisor, payload, None);
                log::error!(target: "vigil", "{}: supervisor failed: {reason}; stopping its children", sup.path);
                sup.stop_after_panic();
                (reason, sup.started)
            }
        };
        // Requests that arrived too late are dropped, so their callers get an
        // answer at once instead of waiting for a next incarnation; requests
        // made from now on are refused (see `SupervisorRef::request`).
        sup.node.inner.lock().running = false;
        for msg in sup.deferred.drain(..).chain(sup.inbox.try_iter()) {
            if let Err(panic) = panic::drop_guarded(msg) {
                log::warn!(target: "vigil", "{}: dropping a late request panicked: {panic}", sup.path);
            }
        }
        outcome
    }
}

struct Child {
    key: u64,
    spec: ChildSpec,
    path: Arc<str>,
    runner: Option<Runner>,
    generation: u64,
    incarnations: u64,
    stop: Option<Arc<AtomicBool>>,
    state: ChildState,
    since: Option<Instant>,
    attempt: u32,
    restarts: VecDeque<Instant>,
    restarts_total: u64,
    last_exit: Option<ExitReason>,
}

struct Timer {
    /// `None` for a backoff too long to represent: the timer never fires.
    at: Option<Instant>,
    group: Vec<u64>,
}

struct Sup {
    path: Arc<str>,
    strategy: Strategy,
    max_children: Option<usize>,
    /// A dynamic supervisor forgets a child that stopped for good.
    dynamic: bool,
    inbox: Receiver<SupMsg>,
    self_tx: Sender<SupMsg>,
    window: Arc<parking_lot::Mutex<RestartWindow>>,
    /// Set when this incarnation starts stopping all its children for good:
    /// from then on nothing is restarted, by the supervisor or in place.
    terminating: Arc<AtomicBool>,
    /// Whether this incarnation reported its start.
    started: bool,
    children: Vec<Child>,
    deferred: VecDeque<SupMsg>,
    timers: Vec<Timer>,
    jitter: Jitter,
    bus: Arc<Bus>,
    node: Arc<Node>,
}

impl Sup {
    fn run(&mut self, link: &Link, generation: u64, specs: &[ChildSpec]) -> (ExitReason, bool) {
        for spec in specs {
            self.push_child(spec.clone());
        }
        for i in 0..self.children.len() {
            let key = self.children[i].key;
            if let Err(reason) = self.start_child(key) {
                let child = self.children[i].path.to_string();
                log::error!(target: "vigil", "{child} failed to start: {reason}");
                self.stop_all();
                return (ExitReason::ChildStartFailed { child, cause: Box::new(reason) }, false);
            }
        }
        link.started(generation);
        self.started = true;
        (self.serve(generation), true)
    }

    /// Stops the children after this supervisor's own code panicked, so none
    /// is left running unsupervised. If stopping in order panics too, every
    /// child is asked to stop and left to end on its own.
    fn stop_after_panic(&mut self) {
        if catch_unwind(AssertUnwindSafe(|| self.stop_all())).is_ok() {
            return;
        }
        for child in &mut self.children {
            if let Some(stop) = &child.stop {
                stop.store(true, Ordering::Relaxed);
            }
            child.spec.body.wake(child.generation);
            let thread = child.runner.take().and_then(Runner::abandon);
            self.bus.abandoned(&child.path, thread);
        }
    }

    fn serve(&mut self, generation: u64) -> ExitReason {
        loop {
            let msg = match self.deferred.pop_front() {
                Some(msg) => Some(msg),
                None => match self.timers.iter().filter_map(|t| t.at).min() {
                    Some(at) => self.inbox.recv_deadline(at).ok(),
                    None => self.inbox.recv().ok(),
                },
            };
            let outcome = match msg {
                None => Ok(()),
                Some(SupMsg::Stop { generation: g }) if g == generation => {
                    self.stop_all();
                    return ExitReason::Shutdown;
                }
                Some(SupMsg::Stop { .. }) => Ok(()),
                Some(SupMsg::Started { key, generation }) => {
                    self.on_started_in_place(key, generation);
                    Ok(())
                }
                Some(SupMsg::Exited { key, generation, reason }) => self.on_exit(key, generation, reason),
                Some(SupMsg::Restarted { key, generation, reason, count, started }) => {
                    self.on_restarted_in_place(key, generation, reason, count);
                    if started {
                        self.on_started_in_place(key, generation);
                    }
                    Ok(())
                }
                Some(SupMsg::Retry { key, reason }) => self.on_retry(key, reason),
                Some(SupMsg::Control { control, caller }) => {
                    self.on_control(control, caller);
                    Ok(())
                }
            };
            if let Err(escalation) = outcome {
                return escalation;
            }
            self.fire_timers();
        }
    }

    fn index(&self, key: u64) -> Option<usize> {
        self.children.iter().position(|c| c.key == key)
    }

    fn find(&self, id: &str) -> Option<usize> {
        self.children.iter().position(|c| c.spec.common.id == id)
    }

    fn push_child(&mut self, spec: ChildSpec) {
        let key = next_key();
        let path: Arc<str> = format!("{}/{}", self.path, spec.common.id).into();
        let child = Child {
            key,
            spec,
            path,
            runner: None,
            generation: 0,
            incarnations: 0,
            stop: None,
            state: ChildState::Restarting,
            since: None,
            attempt: 0,
            restarts: VecDeque::new(),
            restarts_total: 0,
            last_exit: None,
        };
        self.node.inner.lock().rows.push(row(&child));
        self.children.push(child);
    }

    fn sync(&self, i: usize) {
        let child = &self.children[i];
        let mut node = self.node.inner.lock();
        if let Some(slot) = node.rows.iter_mut().find(|r| r.key == child.key) {
            *slot = row(child);
        }
    }

    fn remove(&mut self, i: usize) {
        let mut child = self.children.remove(i);
        child.spec.body.close();
        if let Some(runner) = child.runner.take() {
            runner.quit();
        }
        self.node.inner.lock().rows.retain(|r| r.key != child.key);
        for timer in &mut self.timers {
            timer.group.retain(|&k| k != child.key);
        }
    }

    /// Starts a child and waits for its start hook, within its start timeout.
    fn start_child(&mut self, key: u64) -> Result<(), ExitReason> {
        let Some(i) = self.index(key) else { return Ok(()) };
        let link = Link::new(self.self_tx.clone(), key, Arc::clone(&self.children[i].path), Arc::clone(&self.bus));
        let child = &mut self.children[i];
        child.generation += 1;
        child.state = ChildState::Starting;
        let generation = child.generation;
        let incarnation = child.incarnations;
        child.incarnations += 1;
        let stop = Arc::new(AtomicBool::new(false));
        child.stop = Some(Arc::clone(&stop));
        child.spec.body.reopen();
        let fast = (self.strategy == Strategy::OneForOne
            && child.spec.common.backoff.is_none()
            && child.spec.common.restart != Restart::Temporary)
            .then(|| FastRestart {
                window: Arc::clone(&self.window),
                terminating: Arc::clone(&self.terminating),
                restart: child.spec.common.restart,
            });
        let mut started =
            child.runner.as_ref().is_some_and(|r| r.start(generation, incarnation, Arc::clone(&stop), fast.clone()));
        if !started {
            // No runner yet, or its thread is gone: spawn one.
            match Runner::spawn(child.spec.body.incarnation(), link, child.spec.common.stack_size) {
                Ok(runner) => {
                    started = runner.start(generation, incarnation, stop, fast);
                    child.runner = Some(runner);
                }
                Err(error) => {
                    child.state = ChildState::Restarting;
                    let reason = ExitReason::Spawn { error: error.to_string() };
                    child.last_exit = Some(reason.clone());
                    self.sync(i);
                    return Err(reason);
                }
            }
        }
        if !started {
            let reason = ExitReason::Spawn { error: "the runner thread ended unexpectedly".to_owned() };
            self.children[i].state = ChildState::Restarting;
            return Err(reason);
        }
        let timeout = self.children[i].spec.common.start_timeout;
        match self.wait_for(key, generation, timeout, false) {
            Some(SupMsg::Started { .. }) => {
                let child = &mut self.children[i];
                child.state = ChildState::Running;
                child.since = Some(Instant::now());
                log::debug!(target: "vigil", "started {} (incarnation {incarnation})", child.path);
                let path = child.path.to_string();
                self.bus.publish(|| SupervisionEvent::Started { path, incarnation });
                self.sync(i);
                Ok(())
            }
            Some(SupMsg::Exited { reason, .. }) => {
                let child = &mut self.children[i];
                child.state = ChildState::Restarting;
                child.last_exit = Some(reason.clone());
                self.sync(i);
                Err(reason)
            }
            _ => {
                self.abandon(i, timeout);
                self.children[i].state = ChildState::Restarting;
                let reason = ExitReason::StartTimeout { timeout };
                self.children[i].last_exit = Some(reason.clone());
                self.sync(i);
                Err(reason)
            }
        }
    }

    /// Asks a running child to stop and waits for it, within its shutdown
    /// timeout; abandons it after that. Leaves it in `next` state.
    fn stop_child(&mut self, i: usize, next: ChildState) {
        let child = &mut self.children[i];
        // `Starting` here is an incarnation its runner restarted in place;
        // a synchronous start never overlaps a stop.
        if !matches!(child.state, ChildState::Running | ChildState::Starting) {
            child.state = next;
            return;
        }
        if let Some(stop) = &child.stop {
            stop.store(true, Ordering::Relaxed);
        }
        child.spec.body.wake(child.generation);
        let (key, generation, timeout) = (child.key, child.generation, child.spec.common.shutdown);
        match self.wait_for(key, generation, timeout, true) {
            Some(SupMsg::Exited { reason, .. }) => {
                let child = &mut self.children[i];
                log::debug!(target: "vigil", "stopped {}: {reason}", child.path);
                let path = child.path.to_string();
                child.last_exit = Some(reason.clone());
                self.bus.publish(|| SupervisionEvent::Exited { path, reason });
            }
            _ => self.abandon(i, timeout),
        }
        let child = &mut self.children[i];
        child.state = next;
        child.since = None;
        self.sync(i);
    }

    fn abandon(&mut self, i: usize, timeout: Duration) {
        let child = &mut self.children[i];
        if let Some(stop) = &child.stop {
            stop.store(true, Ordering::Relaxed);
        }
        child.spec.body.wake(child.generation);
        let thread = child.runner.take().and_then(Runner::abandon);
        child.since = None;
        log::warn!(
            target: "vigil",
            "abandoned {}: it did not stop within {}; its thread is left running",
            child.path,
            human(timeout)
        );
        let path = child.path.to_string();
        self.bus.abandoned(&path, thread);
        self.node.inner.lock().abandoned += 1;
        self.bus.publish(|| SupervisionEvent::Abandoned { path, timeout });
    }

    /// Waits for the start or exit report of one incarnation, keeping every
    /// other message for later.
    fn wait_for(&mut self, key: u64, generation: u64, timeout: Duration, exit_only: bool) -> Option<SupMsg> {
        let matches = |msg: &SupMsg| match msg {
            SupMsg::Started { key: k, generation: g } => !exit_only && *k == key && *g == generation,
            SupMsg::Exited { key: k, generation: g, .. } => *k == key && *g == generation,
            _ => false,
        };
        if let Some(pos) = self.deferred.iter().position(matches) {
            return self.deferred.remove(pos);
        }
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let msg = match deadline {
                Some(deadline) => self.inbox.recv_deadline(deadline).ok()?,
                None => self.inbox.recv().ok()?,
            };
            if matches(&msg) {
                return Some(msg);
            }
            self.deferred.push_back(msg);
        }
    }

    /// Stops every child in reverse start order and ends their threads. This
    /// incarnation is terminating: nothing is restarted from here on, by the
    /// supervisor (it reads no more reports) or in place by a runner.
    fn stop_all(&mut self) {
        self.terminating.store(true, Ordering::Release);
        // A runner decides an in-place restart under this lock after reading
        // the flag: once we hold it, every later decision sees the flag.
        drop(self.window.lock());
        self.timers.clear();
        for i in (0..self.children.len()).rev() {
            self.stop_child(i, ChildState::Stopped);
            // Let each thread end while the next child stops; joined below.
            if let Some(runner) = &self.children[i].runner {
                runner.request_quit();
            }
        }
        for child in &mut self.children {
            if let Some(runner) = child.runner.take() {
                runner.quit();
            }
        }
    }

    fn on_exit(&mut self, key: u64, generation: u64, reason: ExitReason) -> Result<(), ExitReason> {
        let Some(i) = self.index(key) else { return Ok(()) };
        let child = &mut self.children[i];
        if child.generation != generation || !matches!(child.state, ChildState::Running | ChildState::Starting) {
            return Ok(());
        }
        let uptime = child.since.take().map(|since| since.elapsed());
        child.last_exit = Some(reason.clone());
        let path = child.path.to_string();
        self.bus.publish(|| SupervisionEvent::Exited { path, reason: reason.clone() });
        let restart = child.spec.common.restart;
        let restarted = !(restart == Restart::Temporary || (restart == Restart::Transient && reason.is_normal()));
        if restarted {
            // The restart line that follows names the reason.
            log::debug!(target: "vigil", "{} exited: {reason}", child.path);
        } else if reason.is_normal() {
            log::info!(target: "vigil", "{} exited: {reason} ({restart:?}, not restarted)", child.path);
        } else {
            log::warn!(target: "vigil", "{} exited: {reason} ({restart:?}, not restarted)", child.path);
        }
        match (restart, reason.is_normal()) {
            (Restart::Temporary, _) => {
                self.remove(i);
                return Ok(());
            }
            (Restart::Transient, true) if self.dynamic => {
                self.remove(i);
                return Ok(());
            }
            (Restart::Transient, true) => {
                child.state = ChildState::Stopped;
                child.spec.body.close();
                if let Some(runner) = child.runner.take() {
                    runner.quit();
                }
                self.sync(i);
                return Ok(());
            }
            _ => {}
        }
        if let (Some(backoff), Some(uptime)) = (&child.spec.common.backoff, uptime)
            && uptime >= backoff.reset_uptime()
        {
            child.attempt = 0;
        }
        child.state = ChildState::Restarting;
        self.sync(i);
        let group = self.group(i);
        self.restart(key, reason, group)
    }

    fn limits(&self) -> (u32, Duration) {
        let window = self.window.lock();
        (window.intensity(), window.period())
    }

    /// Counts a restart in the totals. The window itself counts the restarts
    /// within the period, for the intensity rule and for `stats()` alike.
    fn count_restart(&self) {
        self.node.inner.lock().restarts_total += 1;
    }

    /// Counts, logs and publishes one restart of child `i`.
    fn announce_restart(&mut self, i: usize, now: Instant, count: u32, delay: Duration, reason: &ExitReason) {
        let (intensity, period) = self.limits();
        let child = &mut self.children[i];
        child.restarts_total += 1;
        child.restarts.push_back(now);
        if child.restarts.len() > 64 {
            child.restarts.pop_front();
        }
        // "no limit" and "no backoff" read better than 1000000 and 0µs.
        let limit = if intensity >= MAX_INTENSITY {
            format!("{count} in {}, no limit", human(period))
        } else {
            format!("{count} of {intensity} in {}", human(period))
        };
        let backoff = if delay.is_zero() { "no backoff".to_owned() } else { format!("backoff {}", human(delay)) };
        log::warn!(target: "vigil", "restarting {} ({limit}, {backoff}): {reason}", child.path);
        let path = child.path.to_string();
        self.sync(i);
        self.bus.publish(|| SupervisionEvent::Restarting {
            path,
            restarts: count,
            intensity,
            period,
            backoff: delay,
            reason: reason.clone(),
        });
    }

    /// A runner restarted its child in place: account for it as if this
    /// supervisor had done it.
    fn on_restarted_in_place(&mut self, key: u64, generation: u64, reason: ExitReason, count: u32) {
        let Some(i) = self.index(key) else { return };
        let child = &mut self.children[i];
        if child.generation != generation || !matches!(child.state, ChildState::Running | ChildState::Starting) {
            return;
        }
        let now = Instant::now();
        child.since = None;
        child.state = ChildState::Starting;
        child.incarnations += 1;
        child.last_exit = Some(reason.clone());
        log::debug!(target: "vigil", "{} exited: {reason}", child.path);
        let path = child.path.to_string();
        self.bus.publish(|| SupervisionEvent::Exited { path, reason: reason.clone() });
        self.count_restart();
        self.announce_restart(i, now, count, Duration::ZERO, &reason);
    }

    /// The start report of an incarnation that its runner restarted in place.
    fn on_started_in_place(&mut self, key: u64, generation: u64) {
        let Some(i) = self.index(key) else { return };
        let child = &mut self.children[i];
        if child.generation != generation || child.state != ChildState::Starting {
            return;
        }
        child.state = ChildState::Running;
        child.since = Some(Instant::now());
        let (path, incarnation) = (child.path.to_string(), child.incarnations - 1);
        self.sync(i);
        self.bus.publish(|| SupervisionEvent::Started { path, incarnation });
    }

    fn group(&self, i: usize) -> Vec<u64> {
        match self.strategy {
            Strategy::OneForOne => vec![self.children[i].key],
            Strategy::OneForAll => self.children.iter().map(|c| c.key).collect(),
            Strategy::RestForOne => self.children[i..].iter().map(|c| c.key).collect(),
        }
    }

    /// Applies the intensity rule and the strategy after `failed` exited, or
    /// after its restart failed. `Err` is the escalation when the supervisor
    /// gives up.
    fn restart(&mut self, failed: u64, reason: ExitReason, mut group: Vec<u64>) -> Result<(), ExitReason> {
        let now = Instant::now();
        let verdict = self.window.lock().record(now);
        let count = match verdict {
            Verdict::GiveUp { .. } => return Err(self.give_up(failed, reason)),
            Verdict::Restart { count } => count,
        };
        self.count_restart();
        // Siblings stopped by the strategy do not count as restarts.
        for &key in group.iter().rev() {
            if key == failed {
                continue;
            }
            if let Some(j) = self.index(key) {
                self.stop_child(j, ChildState::Restarting);
                if self.children[j].spec.common.restart == Restart::Temporary {
                    self.remove(j);
                }
            }
        }
        group.retain(|&k| self.index(k).is_some());
        let Some(i) = self.index(failed) else { return Ok(()) };
        let child = &mut self.children[i];
        let delay = match child.spec.common.backoff {
            Some(backoff) => {
                let delay = backoff.delay(child.attempt, self.jitter.next_f64());
                child.attempt = child.attempt.saturating_add(1);
                delay
            }
            None => Duration::ZERO,
        };
        self.announce_restart(i, now, count, delay, &reason);
        if delay.is_zero() {
            self.start_group(&group);
        } else {
            for timer in &mut self.timers {
                timer.group.retain(|k| !group.contains(k));
            }
            self.timers.retain(|t| !t.group.is_empty());
            // A delay past the clock's range never fires: the child waits
            // until the supervisor stops.
            self.timers.push(Timer { at: now.checked_add(delay), group });
        }
        Ok(())
    }

    /// Starts the waiting members of a group in order. When one fails to
    /// start, the ones started so far stay up and the failed one is retried
    /// through the inbox ([`SupMsg::Retry`]), as OTP's
    /// `restart_multiple_children` and `try_again_restart`: the retry restarts
    /// the failed child's own group again (for rest-for-one, from the failed
    /// child on; for one-for-all, everything).
    fn start_group(&mut self, group: &[u64]) {
        for &key in group {
            let Some(i) = self.index(key) else { continue };
            if self.children[i].state != ChildState::Restarting {
                continue;
            }
            if let Err(reason) = self.start_child(key) {
                log::warn!(target: "vigil", "{} failed to restart: {reason}", self.children[i].path);
                let path = self.children[i].path.to_string();
                self.bus.publish(|| SupervisionEvent::Exited { path, reason: reason.clone() });
                let _ = self.self_tx.send(SupMsg::Retry { key, reason });
                return;
            }
        }
    }

    /// A retry of a failed restart comes round: restart the child's group
    /// again, counting toward the intensity, unless something else already
    /// restarted, stopped or removed the child meanwhile.
    fn on_retry(&mut self, key: u64, reason: ExitReason) -> Result<(), ExitReason> {
        let Some(i) = self.index(key) else { return Ok(()) };
        if self.children[i].state != ChildState::Restarting {
            return Ok(());
        }
        let group = self.group(i);
        self.restart(key, reason, group)
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(pos) = self.timers.iter().position(|t| t.at.is_some_and(|at| at <= now)) {
            let timer = self.timers.swap_remove(pos);
            self.start_group(&timer.group);
        }
    }

    fn give_up(&mut self, failed: u64, reason: ExitReason) -> ExitReason {
        let child = self.index(failed).map(|i| self.children[i].path.to_string()).unwrap_or_default();
        let (intensity, period) = self.limits();
        log::error!(
            target: "vigil",
            "{} giving up: more than {intensity} restarts in {}; last: {child}: {reason}",
            self.path,
            human(period),
        );
        let escalation = ExitReason::Escalated {
            supervisor: self.path.to_string(),
            intensity,
            period,
            child,
            cause: Box::new(reason),
        };
        let path = self.path.to_string();
        self.bus.publish(|| SupervisionEvent::GaveUp { path, reason: escalation.clone() });
        self.stop_all();
        escalation
    }

    fn on_control(&mut self, control: Control, caller: Option<u64>) {
        match control {
            Control::Start(spec, answer) => {
                let _ = answer.send(self.add_and_start(spec));
            }
            Control::Terminate(id, answer) => {
                let Some(i) = self.find(&id) else {
                    let _ = answer.send(Err(ControlError::NotFound(id)));
                    return;
                };
                let key = self.children[i].key;
                // A child terminating itself waits for this answer before it
                // can return and stop: answer first, then wait for it.
                let answer = if caller == Some(key) {
                    let _ = answer.send(Ok(()));
                    None
                } else {
                    Some(answer)
                };
                for timer in &mut self.timers {
                    timer.group.retain(|&k| k != key);
                }
                self.stop_child(i, ChildState::Stopped);
                if self.dynamic || self.children[i].spec.common.restart == Restart::Temporary {
                    self.remove(i);
                } else {
                    let child = &mut self.children[i];
                    child.spec.body.close();
                    if let Some(runner) = child.runner.take() {
                        runner.quit();
                    }
                    self.sync(i);
                }
                if let Some(answer) = answer {
                    let _ = answer.send(Ok(()));
                }
            }
            Control::Restart(id, answer) => {
                let result = match self.find(&id) {
                    None => Err(ControlError::NotFound(id)),
                    Some(i) if matches!(self.children[i].state, ChildState::Running | ChildState::Starting) => {
                        Err(ControlError::Running(id))
                    }
                    Some(i) => {
                        let key = self.children[i].key;
                        for timer in &mut self.timers {
                            timer.group.retain(|&k| k != key);
                        }
                        self.start_child(key).map_err(|reason| {
                            if let Some(i) = self.index(key) {
                                self.children[i].state = ChildState::Stopped;
                                self.sync(i);
                            }
                            ControlError::Start(StartError::Child { path: format!("{}/{id}", self.path), reason })
                        })
                    }
                };
                let _ = answer.send(result);
            }
            Control::Delete(id, answer) => {
                let result = match self.find(&id) {
                    None => Err(ControlError::NotFound(id)),
                    Some(i) if self.children[i].state != ChildState::Stopped => Err(ControlError::Running(id)),
                    Some(i) => {
                        self.remove(i);
                        Ok(())
                    }
                };
                let _ = answer.send(result);
            }
        }
    }

    fn add_and_start(&mut self, spec: ChildSpec) -> Result<(), ControlError> {
        spec.validate(&self.path).map_err(ControlError::Config)?;
        let id = spec.common.id.clone();
        if self.find(&id).is_some() {
            return Err(ControlError::AlreadyExists(id));
        }
        if let Some(max) = self.max_children
            && self.children.len() >= max
        {
            return Err(ControlError::MaxChildren(max));
        }
        self.push_child(spec);
        let key = self.children[self.children.len() - 1].key;
        self.start_child(key).map_err(|reason| {
            let path = format!("{}/{id}", self.path);
            if let Some(i) = self.index(key) {
                self.remove(i);
            }
            ControlError::Start(StartError::Child { path, reason })
        })
    }
}

fn row(child: &Child) -> Row {
    Row {
        key: child.key,
        id: child.spec.common.id.clone(),
        path: child.path.to_string(),
        restart: child.spec.common.restart,
        state: child.state,
        restarts: child.restarts.iter().copied().collect(),
        restarts_total: child.restarts_total,
        last_exit: child.last_exit.clone(),
        since: child.since,
        body: Arc::clone(&child.spec.body),
    }
}
