//! The actor trait and the context its hooks receive.

use std::time::Duration;

use crate::addr::Addr;
use crate::error::BoxError;
use crate::exit::ExitReason;

/// A synchronous actor: state plus a typed message handler, run on its own OS
/// thread. Blocking inside a hook is fine; it only holds up this actor.
///
/// Every hook that returns `Result` fails the incarnation with `Err`, and a
/// panic in any hook fails it too. Either way the failure reaches the
/// supervisor as an [`ExitReason`]; it never unwinds into another thread.
///
/// The child spec's factory closure builds a fresh value on every (re)start,
/// so state that must survive a restart belongs outside the actor, for
/// example in an `Arc` that the factory closure captures.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use vigil_core::{Actor, BoxError, Context};
///
/// /// Counts messages and reports the total every second.
/// struct Meter { seen: u64 }
///
/// impl Actor for Meter {
///     type Msg = ();
///     fn started(&mut self, ctx: &mut Context<'_, ()>) -> Result<(), BoxError> {
///         ctx.set_receive_timeout(Some(Duration::from_secs(1)));
///         Ok(())
///     }
///     fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> {
///         self.seen += 1;
///         Ok(())
///     }
///     fn timeout(&mut self, _: &mut Context<'_, ()>) -> Result<(), BoxError> {
///         log::info!("seen {} messages", self.seen);
///         Ok(())
///     }
/// }
/// ```
pub trait Actor: Send + 'static {
    /// The messages this actor accepts.
    type Msg: Send + 'static;

    /// Runs once per incarnation, before any message. The supervisor's start
    /// of this child waits for it to return. `Err` or a panic fails the start.
    ///
    /// # Errors
    ///
    /// Return `Err` to fail the start.
    fn started(&mut self, ctx: &mut Context<'_, Self::Msg>) -> Result<(), BoxError> {
        let _ = ctx;
        Ok(())
    }

    /// Handles one message.
    ///
    /// # Errors
    ///
    /// Return `Err` to fail this incarnation. The message is dropped and its
    /// type is named in the exit reason.
    fn handle(&mut self, msg: Self::Msg, ctx: &mut Context<'_, Self::Msg>) -> Result<(), BoxError>;

    /// Runs when no message arrived within the receive timeout set with
    /// [`Context::set_receive_timeout`]. Use it for periodic work.
    ///
    /// # Errors
    ///
    /// Return `Err` to fail this incarnation.
    fn timeout(&mut self, ctx: &mut Context<'_, Self::Msg>) -> Result<(), BoxError> {
        let _ = ctx;
        Ok(())
    }

    /// Runs once when the incarnation ends after a successful start, whatever
    /// the reason: a normal stop, a shutdown, or a failure in `handle` or
    /// `timeout`. It does not run when the start failed. A panic here is
    /// reported as the exit reason in place of a normal one.
    fn stopped(&mut self, reason: &ExitReason) {
        let _ = reason;
    }
}

/// What an actor's hooks can see and change about their incarnation.
#[derive(Debug)]
pub struct Context<'a, M> {
    pub(crate) addr: &'a Addr<M>,
    pub(crate) path: &'a str,
    pub(crate) incarnation: u64,
    pub(crate) receive_timeout: Option<Duration>,
    /// Set by [`stop`](Context::stop) or [`shutdown`](Context::shutdown):
    /// the reason the incarnation ends with after the current hook.
    pub(crate) stop: Option<ExitReason>,
    /// Set by [`ignore`](Context::ignore); read after `started` returns.
    pub(crate) ignore: bool,
    pub(crate) stop_requested: &'a std::sync::atomic::AtomicBool,
    pub(crate) pulse: Option<&'a crate::watchdog::Pulse>,
}

impl<M> Context<'_, M> {
    /// This actor's own address.
    pub fn addr(&self) -> &Addr<M> {
        self.addr
    }

    /// The actor's path in the tree, for example `root/pool/worker-3`.
    pub fn path(&self) -> &str {
        self.path
    }

    /// How many times this child has been started before: 0 on the first
    /// start, 1 after the first restart, and so on.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Calls [`Actor::timeout`] whenever no message arrives for `timeout`.
    /// `None` turns it off. Defaults to `None`.
    pub fn set_receive_timeout(&mut self, timeout: Option<Duration>) {
        self.receive_timeout = timeout;
    }

    /// The receive timeout currently set.
    pub fn receive_timeout(&self) -> Option<Duration> {
        self.receive_timeout
    }

    /// Stops this actor normally after the current hook returns. A transient
    /// child is then not restarted; a permanent one is.
    pub fn stop(&mut self) {
        self.stop = Some(ExitReason::Normal);
    }

    /// Stops this actor after the current hook returns, with reason
    /// [`ExitReason::Shutdown`], as an OTP process exiting with `shutdown` or
    /// `{shutdown, Term}`: a normal exit, so a transient child is not
    /// restarted (a permanent one is, as OTP), it is logged at INFO and not
    /// as a failure, and a [significant](crate::ChildSpec::significant)
    /// child's exit counts toward its supervisor's
    /// [`auto_shutdown`](crate::SupervisorBuilder::auto_shutdown).
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// struct Job;
    /// impl Actor for Job {
    ///     type Msg = &'static str;
    ///     fn handle(&mut self, msg: &'static str, ctx: &mut Context<'_, &'static str>) -> Result<(), BoxError> {
    ///         if msg == "done" {
    ///             ctx.shutdown(); // finished: not restarted, not a crash
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// let spec = ChildSpec::worker("job", || Job).restart(Restart::Transient);
    /// let addr = spec.addr();
    /// let system = Supervisor::builder().child(spec).start()?;
    /// let events = system.subscribe();
    /// addr.tell("done").unwrap();
    /// let exit = events.iter().find_map(|e| match e {
    ///     SupervisionEvent::Exited { reason, .. } => Some(reason),
    ///     _ => None,
    /// });
    /// assert_eq!(exit, Some(ExitReason::Shutdown));
    /// system.shutdown().unwrap();
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn shutdown(&mut self) {
        self.stop = Some(ExitReason::Shutdown);
    }

    /// Answers "ignore" from [`Actor::started`], as an OTP child whose start
    /// returns `ignore`: the start succeeds, but the child does not run. Its
    /// actor is dropped without `stopped`, its mailbox is closed, and its
    /// supervisor keeps its spec, listed as stopped with last exit
    /// [`ExitReason::Ignored`], and does not restart it;
    /// [`restart_child`](crate::SupervisorRef::restart_child) can start it
    /// again. A temporary child that ignores is removed, and so is any child
    /// of a [dynamic](crate::Supervisor::dynamic) supervisor;
    /// [`start_child`](crate::SupervisorRef::start_child) then answers
    /// [`StartOutcome::Ignored`](crate::StartOutcome::Ignored). Ignoring
    /// is not a failure: it counts toward no restart intensity and does not
    /// trigger [`auto_shutdown`](crate::SupervisorBuilder::auto_shutdown).
    ///
    /// Only `started` can answer ignore: called from another hook, it stops
    /// the actor normally, as [`stop`](Context::stop).
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// struct Optional { enabled: bool }
    /// impl Actor for Optional {
    ///     type Msg = ();
    ///     fn started(&mut self, ctx: &mut Context<'_, ()>) -> Result<(), BoxError> {
    ///         if !self.enabled {
    ///             ctx.ignore(); // not configured here: do not run, do not fail
    ///         }
    ///         Ok(())
    ///     }
    ///     fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> { Ok(()) }
    /// }
    /// let system = Supervisor::builder().child(ChildSpec::worker("metrics", || Optional { enabled: false })).start()?;
    /// let child = &system.root().which_children()[0];
    /// assert_eq!((child.state, child.last_exit.clone()), (ChildState::Stopped, Some(ExitReason::Ignored)));
    /// system.shutdown().unwrap();
    /// # Ok::<(), StartError>(())
    /// ```
    pub fn ignore(&mut self) {
        self.ignore = true;
        self.stop = Some(ExitReason::Normal);
    }

    /// Whether the supervisor has asked this actor to stop. A long-running
    /// hook can check this and return early; the actor then stops with
    /// [`ExitReason::Shutdown`].
    pub fn stop_requested(&self) -> bool {
        self.stop_requested.load(std::sync::atomic::Ordering::Relaxed)
            || self.pulse.is_some_and(crate::watchdog::Pulse::is_fenced)
    }

    /// Tells the watchdog that the current hook is alive: a hook that calls
    /// this more often than its child's
    /// [hang timeout](crate::WorkerSpec::hang_timeout) is never declared
    /// hung. Costs one atomic add; does nothing without a hang timeout.
    ///
    /// A hook that was declared hung anyway (it beat too late) sees
    /// [`stop_requested`](Context::stop_requested) return true: its
    /// replacement already runs, and nothing it does is reported.
    ///
    /// # Examples
    ///
    /// ```
    /// # use vigil_core::*;
    /// struct Import;
    /// impl Actor for Import {
    ///     type Msg = Vec<u64>;
    ///     fn handle(&mut self, rows: Vec<u64>, ctx: &mut Context<'_, Vec<u64>>) -> Result<(), BoxError> {
    ///         for chunk in rows.chunks(1000) {
    ///             ctx.heartbeat(); // long, but alive
    ///             let _ = chunk.iter().sum::<u64>();
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn heartbeat(&self) {
        if let Some(pulse) = self.pulse {
            pulse.beat();
        }
    }
}
