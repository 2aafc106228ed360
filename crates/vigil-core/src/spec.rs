//! Child specifications: how a supervisor starts, restarts and stops a child.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::actor::Actor;
use crate::addr::{Addr, Mailbox};
use crate::backoff::Backoff;
use crate::error::{BoxError, ConfigError};
use crate::observe::{ChildKind, SupervisorStats};
use crate::restart::Restart;
use crate::runner::{Factory, Incarnate, WorkerBody};

/// The default mailbox capacity of a worker.
pub const DEFAULT_MAILBOX: usize = 1024;
/// The largest mailbox capacity: a bounded mailbox allocates its slots up
/// front, so a larger one is refused with [`ConfigError::CapacityTooLarge`].
pub const MAX_MAILBOX: usize = 1 << 24;
/// The most memory a mailbox may take. A bounded mailbox allocates all its
/// slots up front, each as large as a message plus a word, so a capacity
/// within [`MAX_MAILBOX`] can still be refused with
/// [`ConfigError::MailboxTooLarge`] when the messages are large: box them,
/// or lower the capacity.
pub const MAX_MAILBOX_BYTES: usize = 1 << 30;

/// The bytes a mailbox of `capacity` slots for `M` allocates up front,
/// saturated at `usize::MAX`.
fn mailbox_bytes<M>(capacity: usize) -> usize {
    capacity.saturating_mul(std::mem::size_of::<(usize, crate::addr::Envelope<M>)>())
}

/// The default time a worker gets to stop before it is abandoned.
pub const DEFAULT_SHUTDOWN: Duration = Duration::from_secs(5);
/// The default time a child's start hook gets before the start fails.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(5);

/// What every child spec has, worker or supervisor.
#[derive(Debug, Clone)]
pub(crate) struct Common {
    pub(crate) id: String,
    pub(crate) restart: Restart,
    pub(crate) backoff: Option<Backoff>,
    pub(crate) shutdown: Duration,
    pub(crate) start_timeout: Duration,
    pub(crate) stack_size: Option<usize>,
    pub(crate) hang_timeout: Option<Duration>,
    /// OTP's `significant`: its exit may trigger its supervisor's
    /// `auto_shutdown`, and health counts it.
    pub(crate) significant: bool,
}

/// The type-erased part of a child: how to run it and what it exposes.
pub(crate) trait Body: Send + Sync + 'static {
    fn incarnation(&self) -> Box<dyn Incarnate>;
    /// Wakes the child so it notices its stop flag.
    fn wake(&self, generation: u64);
    fn mailbox_len(&self) -> usize;
    /// Marks the child stopped for good; returns the messages dropped.
    fn close(&self) -> usize;
    fn reopen(&self);
    fn validate(&self, path: &str) -> Result<(), ConfigError>;
    /// The type of the messages a worker handles.
    fn message_type(&self) -> Option<&'static str> {
        None
    }
    fn kind(&self) -> ChildKind {
        ChildKind::Worker
    }
    /// A nested supervisor's snapshot of its subtree.
    fn stats(&self) -> Option<SupervisorStats> {
        None
    }
    /// The body as `Any`, so that the supervisor module can reach a nested
    /// supervisor's builder (for its shutdown budget).
    fn as_any(&self) -> &dyn std::any::Any;
}

/// A child's specification as its supervisor holds it, as OTP's
/// `get_childspec`: see [`SupervisorRef::get_childspec`](crate::SupervisorRef::get_childspec).
/// It may gain fields: read them by name.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ChildSpecInfo {
    /// The child's id.
    pub id: String,
    /// Worker or supervisor.
    pub kind: ChildKind,
    /// When it is restarted.
    pub restart: Restart,
    /// Whether its exit counts toward its supervisor's
    /// [`auto_shutdown`](crate::SupervisorBuilder::auto_shutdown).
    pub significant: bool,
    /// How long it gets to stop before it is abandoned; `Duration::MAX` waits forever.
    pub shutdown: Duration,
    /// How long its start may take.
    pub start_timeout: Duration,
    /// Its backoff between restarts, if any.
    pub backoff: Option<Backoff>,
    /// Its hang timeout, if any.
    pub hang_timeout: Option<Duration>,
    /// Its thread's stack size, if set.
    pub stack_size: Option<usize>,
    /// The type of the messages a worker handles; `None` for a supervisor.
    pub message_type: Option<&'static str>,
}

impl ChildSpecInfo {
    pub(crate) fn new(common: &Common, body: &dyn Body) -> ChildSpecInfo {
        ChildSpecInfo {
            id: common.id.clone(),
            kind: body.kind(),
            restart: common.restart,
            significant: common.significant,
            shutdown: common.shutdown,
            start_timeout: common.start_timeout,
            backoff: common.backoff,
            hang_timeout: common.hang_timeout,
            stack_size: common.stack_size,
            message_type: body.message_type(),
        }
    }
}

/// A type-erased child specification, ready to put in a supervisor.
///
/// Build one with [`ChildSpec::worker`], [`ChildSpec::try_worker`] or
/// [`ChildSpec::supervisor`].
#[must_use]
#[derive(Clone)]
pub struct ChildSpec {
    pub(crate) common: Common,
    pub(crate) body: Arc<dyn Body>,
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.common.id)
            .field("kind", &if self.is_supervisor() { "supervisor" } else { "worker" })
            .field("restart", &self.common.restart)
            .finish()
    }
}

macro_rules! common_setters {
    () => {
        /// When to restart the child. Defaults to [`Restart::Permanent`].
        pub fn restart(mut self, restart: Restart) -> Self {
            self.common.restart = restart;
            self
        }

        /// Waits between restarts of this child. Defaults to no backoff: an
        /// immediate restart, as in OTP.
        pub fn backoff(mut self, backoff: Backoff) -> Self {
            self.common.backoff = Some(backoff);
            self
        }

        /// How long the child gets to stop before it is abandoned (threads
        /// cannot be killed). For a supervisor it covers its whole subtree.
        /// `Duration::MAX` waits forever. Defaults to 5 s for a worker and
        /// forever for a supervisor, as OTP.
        pub fn shutdown(mut self, timeout: Duration) -> Self {
            self.common.shutdown = timeout;
            self
        }

        /// How long the start hook may take before the start fails and the
        /// thread is abandoned. Defaults to 5 s for a worker and 60 s for a
        /// supervisor, whose start includes its children's.
        pub fn start_timeout(mut self, timeout: Duration) -> Self {
            self.common.start_timeout = timeout;
            self
        }

        /// The stack size of the child's OS thread, in bytes. Defaults to
        /// Rust's default (2 MiB, or `RUST_MIN_STACK`); only touched pages
        /// use memory.
        pub fn stack_size(mut self, bytes: usize) -> Self {
            self.common.stack_size = Some(bytes);
            self
        }

        /// Marks the child significant, as OTP's `significant => true`: its
        /// end counts towards its supervisor's
        /// [`auto_shutdown`](crate::SupervisorBuilder::auto_shutdown), and
        /// health reports (readiness, liveness) watch it. As in OTP, `start`
        /// and `start_child` refuse a significant child under a supervisor
        /// whose `auto_shutdown` is never
        /// ([`ConfigError::SignificantWithoutAutoShutdown`]) and a permanent
        /// one ([`ConfigError::SignificantPermanent`]). Defaults to `false`.
        pub fn significant(mut self, significant: bool) -> Self {
            self.common.significant = significant;
            self
        }

        /// The child's id, unique among its siblings.
        pub fn id(&self) -> &str {
            &self.common.id
        }
    };
}

impl ChildSpec {
    /// A worker built by `factory` on every (re)start.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use vigil_core::*;
    ///
    /// struct Echo;
    /// impl Actor for Echo {
    ///     type Msg = String;
    ///     fn handle(&mut self, msg: String, _: &mut Context<'_, String>) -> Result<(), BoxError> {
    ///         println!("{msg}");
    ///         Ok(())
    ///     }
    /// }
    /// let spec = ChildSpec::worker("echo", || Echo)
    ///     .restart(Restart::Transient)
    ///     .backoff(Backoff::exponential(Duration::from_millis(10), Duration::from_secs(5)))
    ///     .mailbox(64);
    /// let echo: Addr<String> = spec.addr();
    /// # drop(echo);
    /// ```
    pub fn worker<A, F>(id: impl Into<String>, factory: F) -> WorkerSpec<A>
    where
        A: Actor,
        F: Fn() -> A + Send + Sync + 'static,
    {
        WorkerSpec::new(id.into(), Arc::new(move || Ok(factory())))
    }

    /// A worker whose factory may fail. A failure counts as a failed start.
    pub fn try_worker<A, E, F>(id: impl Into<String>, factory: F) -> WorkerSpec<A>
    where
        A: Actor,
        E: Into<BoxError>,
        F: Fn() -> Result<A, E> + Send + Sync + 'static,
    {
        WorkerSpec::new(id.into(), Arc::new(move || factory().map_err(Into::into)))
    }

    common_setters!();

    pub(crate) fn is_supervisor(&self) -> bool {
        self.body.kind() == ChildKind::Supervisor
    }

    pub(crate) fn validate(&self, parent: &str) -> Result<(), ConfigError> {
        let id = &self.common.id;
        if id.is_empty() || id.contains('/') {
            return Err(ConfigError::InvalidId { id: id.clone() });
        }
        let path = format!("{parent}/{id}");
        if let Some(backoff) = &self.common.backoff {
            backoff.validate().map_err(|problem| ConfigError::Backoff { child: path.clone(), problem })?;
        }
        if self.common.shutdown.is_zero() {
            return Err(ConfigError::ZeroTimeout { child: path, which: "shutdown" });
        }
        if self.common.start_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout { child: path, which: "start" });
        }
        if self.common.hang_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::ZeroTimeout { child: path, which: "hang" });
        }
        self.body.validate(&path)
    }
}

/// A worker's specification, with its mailbox. Convert it into a
/// [`ChildSpec`] by passing it to a supervisor builder.
#[must_use]
pub struct WorkerSpec<A: Actor> {
    common: Common,
    factory: Factory<A>,
    capacity: usize,
    mailbox: OnceLock<Arc<Mailbox<A::Msg>>>,
    capacity_after_addr: bool,
}

impl<A: Actor> fmt::Debug for WorkerSpec<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerSpec")
            .field("id", &self.common.id)
            .field("actor", &std::any::type_name::<A>())
            .field("restart", &self.common.restart)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl<A: Actor> WorkerSpec<A> {
    fn new(id: String, factory: Factory<A>) -> WorkerSpec<A> {
        WorkerSpec {
            common: Common {
                id,
                restart: Restart::Permanent,
                backoff: None,
                shutdown: DEFAULT_SHUTDOWN,
                start_timeout: DEFAULT_START_TIMEOUT,
                stack_size: None,
                hang_timeout: None,
                significant: false,
            },
            factory,
            capacity: DEFAULT_MAILBOX,
            mailbox: OnceLock::new(),
            capacity_after_addr: false,
        }
    }

    common_setters!();

    /// The longest one hook call (`started`, `handle` or `timeout`) may run
    /// without a [heartbeat](crate::Context::heartbeat) before the watchdog
    /// declares the incarnation hung. Defaults to `None`: no watchdog.
    ///
    /// A hung incarnation exits with [`ExitReason::Hung`](crate::ExitReason::Hung),
    /// which counts toward the intensity like any failure. Its thread cannot
    /// be killed: it is abandoned and fenced (if the hook ever returns, the
    /// thread reads no more messages, runs no more hooks and reports
    /// nothing), and the next incarnation runs on a fresh thread with the
    /// same mailbox, so queued messages are served. A pending
    /// [`call`](crate::Addr::call) whose request the hung hook holds fails
    /// with [`CallError::Dropped`](crate::CallError::Dropped). Detection
    /// takes between the timeout and the timeout plus a tenth of the
    /// smallest hang timeout in the system (at most 1 s more). `start`
    /// refuses zero with [`ConfigError::ZeroTimeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// # use std::time::Duration;
    /// # struct W; impl Actor for W { type Msg = (); fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) } }
    /// let spec = ChildSpec::worker("db", || W).hang_timeout(Duration::from_secs(30));
    /// let system = Supervisor::builder().child(spec).start()?;
    /// system.shutdown().unwrap();
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn hang_timeout(mut self, timeout: Duration) -> Self {
        self.common.hang_timeout = Some(timeout);
        self
    }

    /// The mailbox capacity. Set it before calling [`addr`](WorkerSpec::addr).
    /// `start` reports zero as [`ConfigError::ZeroCapacity`], more than
    /// [`MAX_MAILBOX`] as [`ConfigError::CapacityTooLarge`], and a mailbox
    /// whose slots would take more than [`MAX_MAILBOX_BYTES`] as
    /// [`ConfigError::MailboxTooLarge`]; until then, nothing is allocated for
    /// a refused capacity.
    /// Defaults to [`DEFAULT_MAILBOX`] (1024).
    pub fn mailbox(mut self, capacity: usize) -> Self {
        if self.mailbox.get().is_some() {
            self.capacity_after_addr = true;
        }
        self.capacity = capacity;
        self
    }

    /// The worker's address. It stays valid across restarts, and messages
    /// sent before the tree starts wait in the mailbox.
    pub fn addr(&self) -> Addr<A::Msg> {
        self.shared_mailbox().addr.clone()
    }

    fn shared_mailbox(&self) -> &Arc<Mailbox<A::Msg>> {
        // An out-of-range capacity is refused by `start`; until then the
        // mailbox gets a valid one, so building a spec never fails.
        let refused = self.capacity > MAX_MAILBOX || mailbox_bytes::<A::Msg>(self.capacity) > MAX_MAILBOX_BYTES;
        let capacity = if refused { 1 } else { self.capacity };
        self.mailbox.get_or_init(|| Arc::new(Mailbox::bounded(capacity)))
    }
}

impl<A: Actor> From<WorkerSpec<A>> for ChildSpec {
    fn from(spec: WorkerSpec<A>) -> ChildSpec {
        let mailbox = Arc::clone(spec.shared_mailbox());
        let body = WorkerDef {
            factory: spec.factory,
            mailbox,
            capacity: spec.capacity,
            capacity_after_addr: spec.capacity_after_addr,
        };
        ChildSpec { common: spec.common, body: Arc::new(body) }
    }
}

struct WorkerDef<A: Actor> {
    factory: Factory<A>,
    mailbox: Arc<Mailbox<A::Msg>>,
    capacity: usize,
    capacity_after_addr: bool,
}

impl<A: Actor> Body for WorkerDef<A> {
    fn incarnation(&self) -> Box<dyn Incarnate> {
        Box::new(WorkerBody { factory: Arc::clone(&self.factory), mailbox: Arc::clone(&self.mailbox) })
    }

    fn wake(&self, _generation: u64) {
        self.mailbox.addr.wake();
    }

    fn mailbox_len(&self) -> usize {
        self.mailbox.addr.len()
    }

    fn close(&self) -> usize {
        self.mailbox.close()
    }

    fn reopen(&self) {
        self.mailbox.reopen();
    }

    fn message_type(&self) -> Option<&'static str> {
        Some(std::any::type_name::<A::Msg>())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        if self.capacity == 0 {
            return Err(ConfigError::ZeroCapacity { child: path.to_owned() });
        }
        if self.capacity > MAX_MAILBOX {
            return Err(ConfigError::CapacityTooLarge {
                child: path.to_owned(),
                capacity: self.capacity,
                max: MAX_MAILBOX,
            });
        }
        let bytes = mailbox_bytes::<A::Msg>(self.capacity);
        if bytes > MAX_MAILBOX_BYTES {
            return Err(ConfigError::MailboxTooLarge {
                child: path.to_owned(),
                capacity: self.capacity,
                bytes,
                max_bytes: MAX_MAILBOX_BYTES,
            });
        }
        if self.capacity_after_addr {
            return Err(ConfigError::MailboxAfterAddr { child: path.to_owned() });
        }
        Ok(())
    }
}
