//! Error types, one small enum per operation.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use crate::exit::ExitReason;
use crate::restart::Strategy;

/// A boxed error returned from an actor hook.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

macro_rules! give_back {
    ($name:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        impl<M> $name<M> {
            /// Gives back the message that was not delivered.
            pub fn into_inner(self) -> M {
                match self { $($name::$variant(m) => m),* }
            }
        }
        impl<M> fmt::Debug for $name<M> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self { $($name::$variant(_) => f.write_str(concat!(stringify!($variant), "(..)"))),* }
            }
        }
        impl<M> fmt::Display for $name<M> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self { $($name::$variant(_) => f.write_str($text)),* }
            }
        }
        impl<M> Error for $name<M> {}
    };
}

/// [`Addr::tell`](crate::Addr::tell) failed: the actor stopped for good.
/// The message is given back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TellError<M> {
    /// The actor has stopped for good and will not read its mailbox again.
    Closed(M),
}
give_back!(TellError { Closed => "sending to a stopped actor" });

impl<M> TellError<M> {
    /// Whether the actor has stopped for good (always, for now: the enum may
    /// gain variants).
    pub fn is_closed(&self) -> bool {
        matches!(self, TellError::Closed(_))
    }
}

/// [`Addr::try_tell`](crate::Addr::try_tell) failed. The message is given back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TryTellError<M> {
    /// The mailbox is full.
    Full(M),
    /// The actor has stopped for good.
    Closed(M),
}
give_back!(TryTellError { Full => "sending to a full mailbox", Closed => "sending to a stopped actor" });

impl<M> TryTellError<M> {
    /// Whether the mailbox was full.
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_core::TryTellError;
    /// assert!(TryTellError::Full(1).is_full());
    /// assert!(TryTellError::Closed(1).is_closed());
    /// ```
    pub fn is_full(&self) -> bool {
        matches!(self, TryTellError::Full(_))
    }

    /// Whether the actor has stopped for good.
    pub fn is_closed(&self) -> bool {
        matches!(self, TryTellError::Closed(_))
    }
}

/// [`Addr::tell_timeout`](crate::Addr::tell_timeout) failed. The message is given back.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TellTimeoutError<M> {
    /// The mailbox stayed full until the timeout.
    Timeout(M),
    /// The actor has stopped for good.
    Closed(M),
}
give_back!(TellTimeoutError { Timeout => "timed out sending to a full mailbox", Closed => "sending to a stopped actor" });

impl<M> TellTimeoutError<M> {
    /// Whether the mailbox stayed full until the timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, TellTimeoutError::Timeout(_))
    }

    /// Whether the actor has stopped for good.
    pub fn is_closed(&self) -> bool {
        matches!(self, TellTimeoutError::Closed(_))
    }
}

/// [`Addr::call`](crate::Addr::call) failed. It never hangs past its timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The actor has stopped for good. Returned at once.
    Closed,
    /// No reply arrived within the timeout. A reply that comes later is dropped.
    Timeout,
    /// The actor dropped the request without replying, for example because it
    /// panicked while handling it, or hung and was replaced by the watchdog.
    Dropped,
    /// The call, made from an actor's hook, would close a cycle of actors
    /// each blocked in a `call` to the next: none could answer, so it fails
    /// at once instead of timing out. `cycle` names every actor in it,
    /// starting with the caller; each waits for the next, the last for the
    /// first. An actor calling its own address is a cycle of one. Break the
    /// cycle with a [`tell`](crate::Addr::tell), or handle the request inline.
    Deadlock {
        /// The paths of the actors in the cycle, the caller first.
        cycle: Vec<String>,
    },
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Closed => f.write_str("calling a stopped actor"),
            CallError::Timeout => f.write_str("call timed out waiting for a reply"),
            CallError::Dropped => f.write_str("the actor dropped the request without replying"),
            CallError::Deadlock { cycle } => {
                write!(f, "the call would deadlock: {}", cycle.join(" -> "))?;
                if let Some(first) = cycle.first() {
                    write!(f, " -> {first}")?;
                }
                Ok(())
            }
        }
    }
}

impl Error for CallError {}

/// A supervisor tree's configuration is invalid. Reported by `start` before
/// any thread is spawned.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A mailbox capacity of zero.
    ZeroCapacity {
        /// The child's path.
        child: String,
    },
    /// A mailbox capacity above [`MAX_MAILBOX`](crate::MAX_MAILBOX). A
    /// bounded mailbox allocates its slots up front.
    CapacityTooLarge {
        /// The child's path.
        child: String,
        /// The capacity asked for.
        capacity: usize,
        /// The largest capacity allowed: [`MAX_MAILBOX`](crate::MAX_MAILBOX).
        max: usize,
    },
    /// A mailbox whose slots, allocated up front, would take more than
    /// [`MAX_MAILBOX_BYTES`](crate::MAX_MAILBOX_BYTES): the capacity is within
    /// [`MAX_MAILBOX`](crate::MAX_MAILBOX) but the messages are large.
    MailboxTooLarge {
        /// The child's path.
        child: String,
        /// The capacity asked for.
        capacity: usize,
        /// The bytes its slots would take (saturated at `usize::MAX`).
        bytes: usize,
        /// The most bytes a mailbox may take.
        max_bytes: usize,
    },
    /// A restart intensity above [`MAX_INTENSITY`](crate::MAX_INTENSITY). The
    /// intensity rule keeps one timestamp per restart in the period, so an
    /// unbounded intensity would be unbounded memory under a restart storm.
    IntensityTooLarge {
        /// The supervisor's path.
        supervisor: String,
        /// The intensity asked for.
        intensity: u32,
        /// The largest intensity accepted.
        max: u32,
    },
    /// A restart intensity of zero. (OTP allows it; Vigil asks for a
    /// temporary child instead, which makes the intent explicit.)
    ZeroIntensity {
        /// The supervisor's path.
        supervisor: String,
    },
    /// A strategy other than one-for-one for a
    /// [dynamic](crate::Supervisor::dynamic) supervisor, whose children are
    /// independent by definition.
    DynamicStrategy {
        /// The supervisor's path.
        supervisor: String,
        /// The strategy asked for.
        strategy: Strategy,
    },
    /// A restart period of zero.
    ZeroPeriod {
        /// The supervisor's path.
        supervisor: String,
    },
    /// An invalid backoff, for example `min > max`.
    Backoff {
        /// The child's path.
        child: String,
        /// What is wrong.
        problem: String,
    },
    /// Two children of one supervisor share an id.
    DuplicateId {
        /// The supervisor's path.
        supervisor: String,
        /// The repeated id.
        id: String,
    },
    /// An id that is empty or contains `/`.
    InvalidId {
        /// The offending id.
        id: String,
    },
    /// A static supervisor with no children. Use
    /// [`Supervisor::dynamic`](crate::Supervisor::dynamic) for one that starts empty.
    EmptyTree {
        /// The supervisor's path.
        supervisor: String,
    },
    /// A timeout of zero.
    ZeroTimeout {
        /// The child's path.
        child: String,
        /// Which timeout.
        which: &'static str,
    },
    /// The mailbox capacity was changed after [`WorkerSpec::addr`](crate::WorkerSpec::addr)
    /// handed out an address.
    MailboxAfterAddr {
        /// The child's path.
        child: String,
    },
    /// This binary was built with `panic = "abort"`: panics cannot be caught,
    /// so supervision cannot keep its promises.
    PanicAbort,
    /// A [significant](crate::ChildSpec::significant) child that is
    /// permanent: it never ends, so it could never trigger
    /// [`auto_shutdown`](crate::SupervisorBuilder::auto_shutdown). OTP's
    /// `{bad_combination, [{restart, permanent}, {significant, true}]}`.
    SignificantPermanent {
        /// The child's path.
        child: String,
    },
    /// A [significant](crate::ChildSpec::significant) child under a
    /// supervisor whose [`auto_shutdown`](crate::SupervisorBuilder::auto_shutdown)
    /// is [`AutoShutdown::Never`](crate::AutoShutdown::Never). OTP's
    /// `{bad_combination, [{auto_shutdown, never}, {significant, true}]}`.
    SignificantWithoutAutoShutdown {
        /// The child's path.
        child: String,
    },
    /// The worst-case shutdown time of a supervisor's tree exceeds its
    /// [`grace_period`](crate::SupervisorBuilder::grace_period): the
    /// orchestrator would kill the process before the tree stopped in order.
    ShutdownBudget {
        /// The supervisor's path.
        supervisor: String,
        /// The worst case; `None` when a child waits forever.
        budget: Option<Duration>,
        /// The grace period it must fit in.
        grace_period: Duration,
        /// The children that push it over: those with the largest shutdown
        /// timeouts, largest first, until the rest fits.
        over: Vec<String>,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroCapacity { child } => write!(f, "{child}: mailbox capacity must be at least 1"),
            ConfigError::CapacityTooLarge { child, capacity, max } => write!(
                f,
                "{child}: mailbox capacity {capacity} exceeds the maximum of {max} (slots are allocated up front)"
            ),
            ConfigError::MailboxTooLarge { child, capacity, bytes, max_bytes } => write!(
                f,
                "{child}: a mailbox of {capacity} slots would allocate {bytes} bytes up front, more than the maximum of \
                 {max_bytes}; lower the capacity or box the messages"
            ),
            ConfigError::IntensityTooLarge { supervisor, intensity, max } => write!(
                f,
                "{supervisor}: restart intensity {intensity} exceeds the maximum of {max} (one timestamp is kept per \
                 restart in the period)"
            ),
            ConfigError::ZeroIntensity { supervisor } => write!(
                f,
                "{supervisor}: restart intensity must be at least 1 (use Restart::Temporary children for no restarts)"
            ),
            ConfigError::DynamicStrategy { supervisor, strategy } => write!(
                f,
                "{supervisor}: a dynamic supervisor is always one-for-one; {strategy:?} is not available for it"
            ),
            ConfigError::ZeroPeriod { supervisor } => {
                write!(f, "{supervisor}: restart period must be longer than zero")
            }
            ConfigError::Backoff { child, problem } => write!(f, "{child}: {problem}"),
            ConfigError::DuplicateId { supervisor, id } => write!(f, "{supervisor}: duplicate child id {id:?}"),
            ConfigError::InvalidId { id } => {
                write!(f, "invalid child id {id:?}: ids must be non-empty and contain no '/'")
            }
            ConfigError::EmptyTree { supervisor } => write!(
                f,
                "{supervisor}: a supervisor needs at least one child (use Supervisor::dynamic() for one that starts empty)"
            ),
            ConfigError::ZeroTimeout { child, which } => write!(f, "{child}: {which} timeout must be longer than zero"),
            ConfigError::MailboxAfterAddr { child } => {
                write!(f, "{child}: mailbox capacity changed after addr() handed out an address; set it first")
            }
            ConfigError::PanicAbort => f.write_str(
                "this binary is built with panic = \"abort\": vigil cannot catch panics; build with panic = \"unwind\"",
            ),
            ConfigError::SignificantPermanent { child } => {
                write!(f, "{child}: a significant child must be transient or temporary (a permanent child never ends)")
            }
            ConfigError::SignificantWithoutAutoShutdown { child } => {
                write!(f, "{child}: a significant child needs a supervisor with auto_shutdown other than never")
            }
            ConfigError::ShutdownBudget { supervisor, budget, grace_period, over } => {
                let budget = budget.map_or_else(|| "unbounded".to_owned(), crate::format::human);
                write!(
                    f,
                    "{supervisor}: worst-case shutdown {budget} exceeds the grace period of {}; over it: {}",
                    crate::format::human(*grace_period),
                    over.join(", ")
                )
            }
        }
    }
}

impl Error for ConfigError {}

/// Starting a tree, or a child, failed. Children already started were stopped
/// in reverse order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid.
    Config(ConfigError),
    /// A child failed to start.
    Child {
        /// The path of the child that failed.
        path: String,
        /// Why it failed.
        reason: ExitReason,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "invalid configuration: {e}"),
            StartError::Child { path, reason } => write!(f, "child {path} failed to start: {reason}"),
        }
    }
}

impl Error for StartError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            StartError::Config(e) => Some(e),
            StartError::Child { .. } => None,
        }
    }
}

impl From<ConfigError> for StartError {
    fn from(e: ConfigError) -> Self {
        StartError::Config(e)
    }
}

/// A request to a supervisor through [`SupervisorRef`](crate::SupervisorRef) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlError {
    /// No child has this id.
    NotFound(String),
    /// A child with this id already exists.
    AlreadyExists(String),
    /// The child is running; terminate it first.
    Running(String),
    /// The supervisor already has its `max_children`.
    MaxChildren(usize),
    /// The new child is invalid.
    Config(ConfigError),
    /// The child failed to start.
    Start(StartError),
    /// The supervisor has stopped for good.
    SupervisorGone,
    /// The supervisor did not answer within the timeout.
    Timeout(Duration),
    /// The request came from a child that its supervisor is waiting for (from
    /// its factory or `started` hook while the supervisor waits for the start,
    /// or from `stopped` while it waits for the stop). Answering would need the
    /// caller to return first, so the request is refused at once. Send
    /// yourself a message and make the request from `handle` instead.
    WouldDeadlock {
        /// The path of the child that made the request.
        caller: String,
    },
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::NotFound(id) => write!(f, "no child with id {id:?}"),
            ControlError::AlreadyExists(id) => write!(f, "a child with id {id:?} already exists"),
            ControlError::Running(id) => write!(f, "child {id:?} is running"),
            ControlError::MaxChildren(n) => write!(f, "the supervisor already has its maximum of {n} children"),
            ControlError::Config(e) => write!(f, "invalid child: {e}"),
            ControlError::Start(e) => write!(f, "{e}"),
            ControlError::SupervisorGone => f.write_str("the supervisor has stopped"),
            ControlError::Timeout(d) => write!(f, "the supervisor did not answer within {d:?}"),
            ControlError::WouldDeadlock { caller } => write!(
                f,
                "{caller} asked its own supervisor while the supervisor waits for it to start or stop; \
                 make the request from `handle` instead"
            ),
        }
    }
}

impl Error for ControlError {}

/// The root supervisor gave up: returned by [`System::wait`](crate::System::wait).
/// [`reason`](SystemError::reason) holds the whole failure chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemError {
    /// Why the root exited.
    pub reason: ExitReason,
    /// Children that did not stop within their shutdown timeout while the
    /// tree was torn down.
    pub abandoned: Vec<String>,
}

impl fmt::Display for SystemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the supervision tree gave up: {}", self.reason)
    }
}

impl Error for SystemError {}
