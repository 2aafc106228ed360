//! Supervisors: strategies, restart intensity, backoff, ordered start and
//! shutdown, escalation, and the dynamic children API.
//!
//! A supervisor runs on its own runner thread and owns its children's
//! runners. It reacts to three kinds of input, all through one inbox: reports
//! from children (started, exited), requests from [`SupervisorRef`]s and its
//! parent's stop request. Backoff delays are timers on that inbox, so a
//! supervisor waiting to restart a child still answers requests and stops
//! promptly.

//! The parts, one file each:
//!
//! - `builder`: [`SupervisorBuilder`], the configuration and its validation;
//! - `handle`: [`SupervisorRef`], the dynamic children API;
//! - `node`: what a supervisor publishes about its children, for `stats()`;
//! - `run`: one incarnation of a supervisor and its event loop;
//! - `children`: starting and stopping one child within its timeouts;
//! - `restarts`: what happens when a child exits (the rule itself, a pure
//!   value, is `crate::restart`);
//! - `requests`: the supervisor's side of the `SupervisorRef` API;
//! - `budget`: the worst-case shutdown time of a tree, and `grace_period`.

use std::sync::atomic::{AtomicU64, Ordering};

mod budget;
mod builder;
mod children;
mod handle;
mod node;
mod requests;
mod restarts;
mod run;

pub(crate) use budget::live as live_budget;
pub use budget::{SHUTDOWN_SLACK_PER_CHILD, ShutdownBudget};
pub use builder::SupervisorBuilder;
pub use handle::{ChildCounts, SupervisorRef};

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
    /// [`ChildSpec::supervisor`](crate::ChildSpec::supervisor).
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

/// The largest restart intensity a supervisor accepts. The intensity rule
/// keeps the time of every restart within the period, at most `intensity` of
/// them (16 bytes each), so this bounds a supervisor's memory under a restart
/// storm at 16 MB.
pub const MAX_INTENSITY: u32 = 1_000_000;

/// Keys identify children across a tree, never reused.
static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_key() -> u64 {
    NEXT_KEY.fetch_add(1, Ordering::Relaxed)
}
