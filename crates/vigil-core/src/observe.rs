//! Observability: supervision events, the subscription bus, and `stats()`
//! snapshots of the tree.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;
use serde::Serialize;

use crate::exit::ExitReason;
use crate::format::{as_millis, as_millis_opt};
use crate::restart::{Restart, Strategy};

/// A lifecycle event in the tree, delivered to every
/// [subscriber](crate::System::subscribe). Serialises to JSON with an
/// `event` tag; durations are in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SupervisionEvent {
    /// A child started (or restarted).
    Started {
        /// The child's path.
        path: String,
        /// 0 for the first start, then 1, 2 … for restarts.
        incarnation: u64,
    },
    /// A child exited.
    Exited {
        /// The child's path.
        path: String,
        /// Why.
        reason: ExitReason,
    },
    /// A supervisor decided to restart a child.
    Restarting {
        /// The child's path.
        path: String,
        /// Restarts in the supervisor's current window, this one included.
        restarts: u32,
        /// The supervisor's intensity.
        intensity: u32,
        /// The supervisor's period, in ms.
        #[serde(serialize_with = "as_millis", rename = "period_ms")]
        period: Duration,
        /// The backoff before the restart, in ms.
        #[serde(serialize_with = "as_millis", rename = "backoff_ms")]
        backoff: Duration,
        /// The exit that caused it.
        reason: ExitReason,
    },
    /// A supervisor reached its restart intensity and gave up.
    GaveUp {
        /// The supervisor's path.
        path: String,
        /// The exit it escalates.
        reason: ExitReason,
    },
    /// The watchdog declared a child hung: one of its hooks ran longer than
    /// its hang timeout. Its thread was abandoned and fenced; an
    /// [`Exited`](SupervisionEvent::Exited) with [`ExitReason::Hung`] and the
    /// supervisor's decision follow.
    Hung {
        /// The child's path.
        path: String,
        /// The hook that did not return.
        hook: crate::exit::Hook,
        /// The type of the message being handled, for `handle`.
        message_type: Option<&'static str>,
        /// How long it ran without progress, in ms.
        #[serde(serialize_with = "as_millis", rename = "elapsed_ms")]
        elapsed: Duration,
        /// Abandoned threads of the system still running, this one included.
        abandoned_threads: usize,
    },
    /// A child did not stop within its shutdown timeout; its thread was left
    /// running and the shutdown went on.
    Abandoned {
        /// The child's path.
        path: String,
        /// The timeout that passed, in ms.
        #[serde(serialize_with = "as_millis", rename = "timeout_ms")]
        timeout: Duration,
    },
    /// This subscriber fell behind: its queue was full, and `missed` events
    /// were dropped for it since the last one it was sent. Comes before the
    /// next event that fits.
    Lagged {
        /// How many events this subscriber missed.
        missed: u64,
    },
}

/// How many events a [subscription](crate::System::subscribe) holds before
/// further events are dropped for it (and counted in a
/// [`Lagged`](SupervisionEvent::Lagged) event): a subscriber that does not
/// read cannot grow memory without bound.
pub const SUBSCRIPTION_CAPACITY: usize = 1024;

struct Subscriber {
    tx: Sender<SupervisionEvent>,
    missed: u64,
}

impl Subscriber {
    /// Sends `event`, after the count of events missed before it if any.
    /// False once the subscriber is gone.
    fn send(&mut self, event: &SupervisionEvent) -> bool {
        if self.missed > 0 {
            match self.tx.try_send(SupervisionEvent::Lagged { missed: self.missed }) {
                Ok(()) => self.missed = 0,
                Err(TrySendError::Full(_)) => {
                    self.missed += 1;
                    return true;
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
        match self.tx.try_send(event.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                if self.missed == 0 {
                    log::warn!(
                        target: "vigil",
                        "a supervision event subscriber is {SUBSCRIPTION_CAPACITY} events behind; dropping events for it"
                    );
                }
                self.missed += 1;
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

/// The default limit on abandoned threads still running in one system; see
/// [`SupervisorBuilder::max_abandoned_threads`](crate::SupervisorBuilder::max_abandoned_threads).
pub const DEFAULT_MAX_ABANDONED_THREADS: usize = 64;

/// A thread left running past its shutdown or start timeout, or declared hung.
struct Abandoned {
    path: String,
    thread: Option<JoinHandle<()>>,
    since: Instant,
    hung: bool,
}

/// A thread the tree abandoned that is still running, as
/// [`stats`](crate::System::stats) and [`ShutdownReport`](crate::ShutdownReport)
/// list it. It may gain fields: read them by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AbandonedThread {
    /// The path of the child whose thread it is.
    pub path: String,
    /// Whether the watchdog declared it hung (else it did not stop or start
    /// in time).
    pub hung: bool,
    /// How long since it was abandoned (`stuck_ms` in JSON); for a hung
    /// thread, add the hang timeout for how long its hook has run.
    #[serde(serialize_with = "as_millis", rename = "stuck_ms")]
    pub stuck: Duration,
}

/// Shared by every supervisor of one tree: subscribers, abandoned threads
/// and the watchdog.
pub(crate) struct Bus {
    subscribers: Mutex<Vec<Subscriber>>,
    count: AtomicUsize,
    abandoned: Mutex<Vec<Abandoned>>,
    pub(crate) watchdog: crate::watchdog::Watchdog,
    /// The most abandoned threads still running before a hang escalates.
    pub(crate) max_abandoned: usize,
    late_returns: AtomicU64,
    hangs: AtomicU64,
}

impl Default for Bus {
    fn default() -> Bus {
        Bus::new(DEFAULT_MAX_ABANDONED_THREADS)
    }
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus").field("subscribers", &self.count.load(Ordering::Relaxed)).finish()
    }
}

impl Bus {
    pub(crate) fn new(max_abandoned: usize) -> Bus {
        Bus {
            subscribers: Mutex::default(),
            count: AtomicUsize::new(0),
            abandoned: Mutex::default(),
            watchdog: crate::watchdog::Watchdog::default(),
            max_abandoned,
            late_returns: AtomicU64::new(0),
            hangs: AtomicU64::new(0),
        }
    }

    /// A fenced thread's hook returned after the watchdog replaced it.
    pub(crate) fn late_return(&self) {
        self.late_returns.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a thread abandoned because it hung; returns how many
    /// abandoned threads are still running, this one included.
    pub(crate) fn hung(&self, path: &str, thread: Option<JoinHandle<()>>) -> usize {
        self.hangs.fetch_add(1, Ordering::Relaxed);
        let mut abandoned = self.abandoned.lock();
        abandoned.push(Abandoned { path: path.to_owned(), thread, since: Instant::now(), hung: true });
        abandoned.retain(|a| a.thread.as_ref().is_none_or(|t| !t.is_finished()));
        abandoned.len()
    }

    /// Hangs detected, and hung threads that returned late, since the start.
    pub(crate) fn hang_counts(&self) -> (u64, u64) {
        (self.hangs.load(Ordering::Relaxed), self.late_returns.load(Ordering::Relaxed))
    }

    /// The abandoned threads still running.
    pub(crate) fn abandoned_threads(&self) -> Vec<AbandonedThread> {
        let now = Instant::now();
        let mut abandoned = self.abandoned.lock();
        abandoned.retain(|a| a.thread.as_ref().is_none_or(|t| !t.is_finished()));
        abandoned
            .iter()
            .map(|a| AbandonedThread {
                path: a.path.clone(),
                hung: a.hung,
                stuck: now.saturating_duration_since(a.since),
            })
            .collect()
    }

    pub(crate) fn subscribe(&self) -> Receiver<SupervisionEvent> {
        let (tx, rx) = crossbeam_channel::bounded(SUBSCRIPTION_CAPACITY);
        let mut subscribers = self.subscribers.lock();
        subscribers.push(Subscriber { tx, missed: 0 });
        self.count.store(subscribers.len(), Ordering::Release);
        rx
    }

    pub(crate) fn publish(&self, event: impl FnOnce() -> SupervisionEvent) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let event = event();
        let mut subscribers = self.subscribers.lock();
        subscribers.retain_mut(|s| s.send(&event));
        self.count.store(subscribers.len(), Ordering::Release);
    }

    /// Records a thread abandoned at `path`; `thread` tells when it ends.
    pub(crate) fn abandoned(&self, path: &str, thread: Option<JoinHandle<()>>) {
        self.abandoned.lock().push(Abandoned { path: path.to_owned(), thread, since: Instant::now(), hung: false });
    }
}

/// The state of a child, as [`stats`](crate::System::stats) shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildState {
    /// Its start is in progress.
    Starting,
    /// Started and running.
    Running,
    /// Waiting for its restart (backoff, or a sibling's restart).
    Restarting,
    /// Not running and not going to be restarted by the supervisor: a
    /// transient child that exited normally, one terminated through the API,
    /// or one whose start answered [ignore](crate::Context::ignore).
    Stopped,
}

/// What a successful [`start_child`](crate::SupervisorRef::start_child) or
/// [`restart_child`](crate::SupervisorRef::restart_child) did: OTP's
/// `{ok, Pid}` and `{ok, undefined}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StartOutcome {
    /// The child started and runs.
    Running,
    /// The child's start hook answered [ignore](crate::Context::ignore): it
    /// does not run. A temporary child, or a child of a dynamic supervisor,
    /// is not kept; another is kept, stopped, for `restart_child`.
    Ignored,
}

/// Whether a child is a worker or a supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildKind {
    /// An actor.
    Worker,
    /// A nested supervisor.
    Supervisor,
}

/// A snapshot of one child. It may gain fields: read them by name.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ChildStats {
    /// The child's id.
    pub id: String,
    /// Its path in the tree.
    pub path: String,
    /// A worker or a supervisor (`"worker"` or `"supervisor"` in JSON).
    pub kind: ChildKind,
    /// Its restart type.
    pub restart: Restart,
    /// Whether it is significant (see [`ChildSpec::significant`](crate::ChildSpec::significant)).
    pub significant: bool,
    /// Its state.
    pub state: ChildState,
    /// Restarts since its supervisor started.
    pub restarts_total: u64,
    /// Restarts within its supervisor's current intensity period.
    pub restarts_in_window: u32,
    /// Its last exit reason.
    pub last_exit: Option<ExitReason>,
    /// How long the current incarnation has run (`uptime_ms` in JSON).
    #[serde(serialize_with = "as_millis_opt", rename = "uptime_ms")]
    pub uptime: Option<Duration>,
    /// Messages waiting in its mailbox.
    pub mailbox_len: usize,
    /// For a supervisor: its own snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supervisor: Option<Box<SupervisorStats>>,
}

/// A snapshot of one supervisor and its children. It may gain fields: read
/// them by name.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SupervisorStats {
    /// The supervisor's path.
    pub path: String,
    /// Its strategy.
    pub strategy: Strategy,
    /// Its restart intensity.
    pub intensity: u32,
    /// Its restart period (`period_ms` in JSON).
    #[serde(serialize_with = "as_millis", rename = "period_ms")]
    pub period: Duration,
    /// Restarts within the current period.
    pub restarts_in_window: u32,
    /// Restarts since it started.
    pub restarts_total: u64,
    /// Children it abandoned because they did not stop in time.
    pub abandoned: u64,
    /// Hangs of its children that the watchdog detected.
    pub hangs: u64,
    /// Tree-wide, filled in by [`System::stats`](crate::System::stats) on the
    /// root only: hangs detected in the whole tree.
    pub hangs_total: u64,
    /// Tree-wide, root only: hung threads whose hook returned after they
    /// were replaced (they exited quietly).
    pub late_returns: u64,
    /// Tree-wide, root only: abandoned threads still running, with how long
    /// each has been stuck.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub abandoned_threads: Vec<AbandonedThread>,
    /// Its children, in start order.
    pub children: Vec<ChildStats>,
}

impl SupervisorStats {
    /// Finds a child anywhere below this supervisor by path.
    pub fn find(&self, path: &str) -> Option<&ChildStats> {
        self.children
            .iter()
            .find_map(|c| if c.path == path { Some(c) } else { c.supervisor.as_deref().and_then(|s| s.find(path)) })
    }
}
