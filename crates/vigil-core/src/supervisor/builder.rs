//! The supervisor's configuration: strategy, intensity, children; and its
//! validation before anything starts.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::MAX_INTENSITY;
use super::handle::SupervisorRef;
use super::node::Node;
use super::run::SupervisorBody;
use crate::error::ConfigError;
use crate::observe::{ChildKind, SupervisorStats};
use crate::protocol::{Inbox, SupMsg};
use crate::restart::{AutoShutdown, Restart, Strategy};
use crate::runner::Incarnate;
use crate::spec::{Body, ChildSpec, Common};

/// Builds a supervisor. Setters take `self` and chain.
#[must_use]
#[derive(Clone)]
pub struct SupervisorBuilder {
    pub(crate) id: String,
    pub(super) strategy: Strategy,
    pub(super) intensity: u32,
    pub(super) period: Duration,
    pub(super) max_children: Option<usize>,
    pub(super) dynamic: bool,
    pub(super) children: Vec<ChildSpec>,
    pub(crate) inbox: Arc<Inbox>,
    pub(super) node: Arc<Node>,
    pub(crate) max_abandoned: usize,
    pub(crate) hang_timeout: Option<Duration>,
    pub(super) auto_shutdown: AutoShutdown,
    pub(super) grace_period: Option<Duration>,
}

impl fmt::Debug for SupervisorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorBuilder")
            .field("id", &self.id)
            .field("strategy", &self.strategy)
            .field("intensity", &self.intensity)
            .field("period", &self.period)
            .field("auto_shutdown", &self.auto_shutdown)
            .field("children", &self.children)
            .finish()
    }
}

impl SupervisorBuilder {
    pub(super) fn new(dynamic: bool) -> SupervisorBuilder {
        SupervisorBuilder {
            id: "root".to_owned(),
            strategy: Strategy::OneForOne,
            intensity: 1,
            period: Duration::from_secs(5),
            max_children: None,
            dynamic,
            children: Vec::new(),
            inbox: Arc::new(Inbox::new()),
            node: Arc::new(Node::default()),
            max_abandoned: crate::observe::DEFAULT_MAX_ABANDONED_THREADS,
            hang_timeout: None,
            auto_shutdown: AutoShutdown::Never,
            grace_period: None,
        }
    }

    pub(crate) fn with_id(mut self, id: String) -> SupervisorBuilder {
        self.id = id;
        self
    }

    /// For the root of a [`System`](crate::System): the most abandoned
    /// threads (hung, or not stopped in time) that may still be running when
    /// the watchdog declares a child hung. Past it, the hung child's
    /// supervisor gives up with [`ExitReason::AbandonedLimit`](crate::ExitReason::AbandonedLimit)
    /// instead of leaking another thread, and its parent handles that like
    /// any failure. Zero means a hang always escalates. Ignored on a nested
    /// supervisor: the limit is the system's. Defaults to
    /// [`DEFAULT_MAX_ABANDONED_THREADS`](crate::DEFAULT_MAX_ABANDONED_THREADS) (64).
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # use std::time::Duration;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let system = Supervisor::builder()
    ///     .max_abandoned_threads(8)
    ///     .child(ChildSpec::worker("db", || W).hang_timeout(Duration::from_secs(30)))
    ///     .start()?;
    /// assert!(system.stats().abandoned_threads.is_empty());
    /// system.shutdown().unwrap();
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn max_abandoned_threads(mut self, limit: usize) -> Self {
        self.max_abandoned = limit;
        self
    }

    /// Puts this supervisor's own loop under the watchdog, as
    /// [`WorkerSpec::hang_timeout`](crate::WorkerSpec::hang_timeout) does a
    /// worker's hooks: the longest it may spend on one message, timer or
    /// request, user code it runs included (the `Drop` of messages it drops
    /// when it closes a mailbox, of a child spec's factory). Waiting for a
    /// child's start or stop, bounded by that child's timeouts, does not
    /// count. Off by default.
    ///
    /// A supervisor declared hung is reported to its parent as
    /// [`ExitReason::Hung`](crate::ExitReason::Hung) in
    /// [`Hook::Supervisor`](crate::Hook::Supervisor) and fenced: if its loop
    /// resumes, it starts, stops and reports nothing. It is not replaced,
    /// because its children still run and own their mailboxes: its parent
    /// ends with [`ExitReason::HungSupervisor`](crate::ExitReason::HungSupervisor),
    /// and so does every supervisor up to the root. A zero timeout is refused
    /// at start with [`ConfigError::ZeroTimeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # use std::time::Duration;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let pool = Supervisor::builder().hang_timeout(Duration::from_secs(10)).child(ChildSpec::worker("w", || W));
    /// let system = Supervisor::builder().child(ChildSpec::supervisor("pool", pool)).start()?;
    /// assert!(system.stats().abandoned_threads.is_empty());
    /// system.shutdown().unwrap();
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn hang_timeout(mut self, timeout: Duration) -> Self {
        self.hang_timeout = Some(timeout);
        self
    }

    /// The restart strategy. Defaults to [`Strategy::OneForOne`]. A dynamic
    /// supervisor is always one-for-one: `start` refuses any other strategy
    /// for it with [`ConfigError::DynamicStrategy`].
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
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

    /// Shuts this supervisor down when its significant children end, as
    /// OTP's `auto_shutdown` flag: see [`AutoShutdown`]. It stops its
    /// children in reverse start order and exits with
    /// [`ExitReason::Shutdown`](crate::ExitReason::Shutdown), as OTP's
    /// supervisor exits with `shutdown`: a normal exit, so a transient parent
    /// does not restart it (a permanent one does), and if it is significant
    /// itself its own parent's `auto_shutdown` applies in turn. At the root,
    /// [`System::wait`](crate::System::wait) returns `Ok`, as after a
    /// requested shutdown. This is how "the service ends when its main
    /// worker finishes" is written.
    ///
    /// `start` (and [`start_child`](SupervisorRef::start_child)) refuse a
    /// [significant](crate::ChildSpec::significant) child that is permanent
    /// ([`ConfigError::SignificantPermanent`]), and any significant child
    /// when this is [`AutoShutdown::Never`]
    /// ([`ConfigError::SignificantWithoutAutoShutdown`]), as OTP. Defaults to
    /// [`AutoShutdown::Never`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// struct Main;
    /// impl Actor for Main {
    ///     type Msg = ();
    ///     fn handle(&mut self, _: (), ctx: &mut Context<'_, ()>) -> Result<(), BoxError> {
    ///         ctx.stop(); // the work is done
    ///         Ok(())
    ///     }
    /// }
    /// struct Helper;
    /// impl Actor for Helper {
    ///     type Msg = ();
    ///     fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) }
    /// }
    /// let main = ChildSpec::worker("main", || Main).restart(Restart::Transient).significant(true);
    /// let addr = main.addr();
    /// let system = Supervisor::builder()
    ///     .auto_shutdown(AutoShutdown::AnySignificant)
    ///     .child(ChildSpec::worker("helper", || Helper))
    ///     .child(main)
    ///     .start()?;
    /// addr.tell(()).unwrap();
    /// let report = system.wait().unwrap(); // the tree ends by itself
    /// assert!(report.is_clean());
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn auto_shutdown(mut self, auto_shutdown: AutoShutdown) -> Self {
        self.auto_shutdown = auto_shutdown;
        self
    }

    /// The time the orchestrator gives the process to stop (Kubernetes'
    /// `terminationGracePeriodSeconds`, systemd's `TimeoutStopSec`): `start`
    /// refuses the tree with [`ConfigError::ShutdownBudget`] when its
    /// worst-case shutdown, [`shutdown_budget`](SupervisorBuilder::shutdown_budget),
    /// exceeds it, naming the children that push it over. Checked for the
    /// children known at start: children added later to a dynamic supervisor
    /// are counted by [`System::shutdown_budget`](crate::System::shutdown_budget)
    /// only. Defaults to no limit.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # use std::time::Duration;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let tree = Supervisor::builder()
    ///     .grace_period(Duration::from_secs(30))
    ///     .child(ChildSpec::worker("api", || W).shutdown(Duration::from_secs(10)))
    ///     .child(ChildSpec::worker("db", || W).shutdown(Duration::from_secs(25)));
    /// match tree.start() {
    ///     Err(StartError::Config(ConfigError::ShutdownBudget { over, .. })) => assert_eq!(over, ["root/db"]),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn grace_period(mut self, grace_period: Duration) -> Self {
        self.grace_period = Some(grace_period);
        self
    }

    /// The most children this supervisor holds; further
    /// [`start_child`](SupervisorRef::start_child) calls fail with
    /// [`ControlError::MaxChildren`](crate::ControlError::MaxChildren). Defaults to no limit.
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
        SupervisorRef::new(&self.inbox, Arc::clone(&self.node))
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
        if self.dynamic && self.strategy != Strategy::OneForOne {
            return Err(ConfigError::DynamicStrategy { supervisor: path.to_owned(), strategy: self.strategy });
        }
        if self.period.is_zero() {
            return Err(ConfigError::ZeroPeriod { supervisor: path.to_owned() });
        }
        if self.hang_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::ZeroTimeout { child: path.to_owned(), which: "hang" });
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
            check_significant(child, self.auto_shutdown, path)?;
        }
        if let Some(grace_period) = self.grace_period {
            super::budget::check(self, path, grace_period)?;
        }
        Ok(())
    }
}

/// OTP's `validSignificant`: a significant child needs an `auto_shutdown`
/// other than never (checked first, as OTP), and must not be permanent.
pub(super) fn check_significant(
    child: &ChildSpec,
    auto_shutdown: AutoShutdown,
    parent: &str,
) -> Result<(), ConfigError> {
    if !child.common.significant {
        return Ok(());
    }
    let path = format!("{parent}/{}", child.common.id);
    if auto_shutdown == AutoShutdown::Never {
        return Err(ConfigError::SignificantWithoutAutoShutdown { child: path });
    }
    if child.common.restart == Restart::Permanent {
        return Err(ConfigError::SignificantPermanent { child: path });
    }
    Ok(())
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

    fn kind(&self) -> ChildKind {
        ChildKind::Supervisor
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn stats(&self) -> Option<SupervisorStats> {
        Some(self.node.snapshot())
    }
}

// Here rather than in spec.rs, beside what it wraps: the spec module knows
// children only through `Body`.
impl ChildSpec {
    /// A nested supervisor. Its [`handle`](SupervisorBuilder::handle) stays
    /// valid across its restarts.
    pub fn supervisor(id: impl Into<String>, builder: SupervisorBuilder) -> ChildSpec {
        let id = id.into();
        let builder = builder.with_id(id.clone());
        let hang_timeout = builder.hang_timeout;
        ChildSpec {
            common: Common {
                id,
                restart: Restart::Permanent,
                backoff: None,
                shutdown: Duration::MAX,
                start_timeout: Duration::from_secs(60),
                stack_size: None,
                hang_timeout,
                significant: false,
            },
            body: Arc::new(builder),
        }
    }
}
